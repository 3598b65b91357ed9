"""Segment a host's prompts and name each object with the host's own labels (text + few-shot).

What every annotation host does on a click or a box: segment the prompts on one image, then
give each object a label of the host's label set, separately for each *output* of the host (a
Label Studio control, a FiftyOne field, a napari layer may each allow other labels). The text
evidence comes from the labels themselves (their texts and synonyms embedded as the
vocabulary) or from a large vocabulary mapped onto them (:class:`LabelMapper`); a project's
few-shot prototypes (:mod:`ovsam_core.hosts.fewshot`) re-rank the labels they exist for
(:func:`choose_label`). Also here: a per-project prototype cache and the prototypes of
human-labelled regions (what a host learns from an annotation).

Coordinates are original-image pixels: masks (H, W) bool, boxes (x0, y0, x1, y1) with exclusive end.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import (Any, Callable, ContextManager, Dict, List, Mapping, Optional, Sequence, Tuple)

import numpy as np

from .fewshot import PrototypeSet, PrototypeStore, region_descriptor
from .labelchoice import choose_label
from .labelmap import HostLabel, LabelMapper
from ..prompts import Prompt, PromptError

#: alternatives of a large vocabulary that are mapped onto host labels
MAX_MAPPED_CLASSES = 2000
#: two descriptors of one label closer than this (cosine) are the same object learned twice
SAME_OBJECT_COSINE = 0.995

#: one output's choice: (label name, score, [(label, score), ...] best first), None: no evidence
Choice = Optional[Tuple[str, float, List[Tuple[str, float]]]]


def label_mapper(predictor, labels: Sequence[HostLabel], vocabulary: Any = None) -> Tuple[LabelMapper, Any]:
    """The :class:`LabelMapper` of ``labels`` and the vocabulary to predict with.

    Without ``vocabulary`` the labels are the vocabulary (their texts + synonyms; ``None`` when
    no label can be embedded: masks only, names from prototypes). With one (a preset, a file, a
    list), its classes are mapped onto the labels.
    """
    if not vocabulary:
        m = LabelMapper(labels)
        return m, (m.vocabulary() or None)
    clf = predictor.classifier(vocabulary)
    return LabelMapper(labels, list(clf.vocabulary.names)), vocabulary


@dataclass(frozen=True)
class PromptObject:
    """One prompt's object and its label in each output.

    Attributes:
        index: the prompt's position in the call.
        prompt: the prompt (pixels).
        mask / bbox_xyxy / area: the segmented object (whole image); ``area == 0``: nothing found.
        vocabulary_top_k: ((class, probability), ...) of the vocabulary predicted with.
        choices: output name -> :data:`Choice` (only outputs with evidence for a label).
    """

    index: int
    prompt: Prompt
    mask: np.ndarray
    bbox_xyxy: Tuple[int, int, int, int]
    area: int
    vocabulary_top_k: Tuple[Tuple[str, float], ...]
    choices: Dict[str, Tuple[str, float, List[Tuple[str, float]]]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        """Mean score of the chosen labels (0 without any)."""
        return float(np.mean([c[1] for c in self.choices.values()])) if self.choices else 0.0


def label_prompts(predictor, image, prompts: Sequence[Prompt], outputs: Mapping[str, Sequence[HostLabel]], *,
                  vocabulary: Any = None, prototypes: Optional[PrototypeSet] = None,
                  smart_labels: Optional[Sequence[Optional[str]]] = None, top_k: int = 5,
                  label_source: str = "model", prototype_weight: float = 50.0,
                  lock: Optional[ContextManager] = None) -> List[PromptObject]:
    """Segment ``prompts`` on ``image`` and name each object with the labels of every output.

    Args:
        predictor: an :class:`ovsam_core.Predictor`.
        image: anything ``predictor.embed`` takes (a :class:`LoadedImage`, a path, an array).
        prompts: one object per prompt (pixels of the original image).
        outputs: output name -> the labels it allows (one host label set may span several).
        vocabulary: ``None``: the labels are the vocabulary; else a vocabulary mapped onto them.
        prototypes: the project's few-shot prototypes (used with two or more).
        smart_labels: per prompt, the label the annotator chose with it (or None).
        top_k / label_source / prototype_weight: as for :func:`ovsam_core.choose_label`.
        lock: held around the model calls (a service serialising its model).
    Returns:
        One :class:`PromptObject` per prompt, in order (``area == 0`` when the mask is empty).
    Raises:
        ValueError: no output has a label.
    """
    all_labels = [lab for labs in outputs.values() for lab in labs]
    if not all_labels:
        raise ValueError("no labels for the outputs (a host label set is empty)")
    mapper, vocab = label_mapper(predictor, all_labels, vocabulary)
    pset = prototypes if prototypes is not None else PrototypeSet((), np.zeros((0, 0), np.float32))
    smart = list(smart_labels) if smart_labels is not None else [None] * len(prompts)
    with lock or contextlib.nullcontext():
        emb = predictor.embed(image)
        if vocab is None:  # nothing embeddable: masks only (labels from prototypes / the smart tool)
            objects = predictor.predict(emb, list(prompts), vocabulary=["object"], top_k=1)
        else:
            n_classes = len(predictor.classifier(vocab))
            objects = predictor.predict(emb, list(prompts), vocabulary=vocab,
                                        top_k=max(1, min(n_classes, MAX_MAPPED_CLASSES)))
        descriptors: List[Optional[np.ndarray]] = [None] * len(prompts)
        if len(pset) >= 2:
            for i, (p, o) in enumerate(zip(prompts, objects)):
                try:
                    descriptors[i] = region_descriptor(emb, mask=None if p.box is not None else o.mask,
                                                       box=p.box or o.bbox_xyxy)
                except ValueError:
                    pass
    out: List[PromptObject] = []
    for i, (p, o, d) in enumerate(zip(prompts, objects, descriptors)):
        obj = PromptObject(i, p, o.mask, o.bbox_xyxy, o.area, tuple(o.top_k) if vocab is not None else ())
        out.append(obj)
        if o.area == 0:
            continue
        p_text = np.zeros(len(mapper.labels)) if vocab is None else mapper.label_probs(o.top_k)
        sims = pset.similarities(d) if d is not None else {}
        for name, labs in outputs.items():
            choice = choose_label([lab.name for lab in labs], mapper, p_text, sims, smart[i], top_k=top_k,
                                  label_source=label_source, prototype_weight=prototype_weight)
            if choice is not None:
                obj.choices[name] = choice
    return out


class PrototypeCache:
    """The :class:`PrototypeSet` of each project in a :class:`PrototypeStore`, loaded once and
    again only after the project's prototypes changed (its generation). ``store=None``: none."""

    def __init__(self, store: Optional[PrototypeStore]) -> None:
        self.store = store
        self._sets: Dict[str, Tuple[int, PrototypeSet]] = {}
        self._lock = threading.Lock()

    def get(self, project: str, model_key: Callable[[], str]) -> PrototypeSet:
        """The project's prototypes for the model ``model_key()`` (called only on a reload)."""
        if self.store is None:
            return PrototypeSet((), np.zeros((0, 0), np.float32))
        gen = self.store.generation(project)
        with self._lock:
            hit = self._sets.get(project)
            if hit is not None and hit[0] == gen:
                return hit[1]
        pset = self.store.load(project, model_key())
        with self._lock:
            self._sets[project] = (gen, pset)
        return pset


@dataclass(frozen=True)
class LabelledRegion:
    """A region a person labelled: ``prompt`` re-finds it, ``mask`` (when it has one) is where its
    appearance is read; a keypoint-only prompt is segmented first."""

    label: str
    region_id: Optional[str]
    prompt: Prompt
    mask: Optional[np.ndarray] = None


def region_prototypes(predictor, image, regions: Sequence[LabelledRegion],
                      on_skip: Callable[[LabelledRegion, Exception], None] = lambda r, e: None,
                      lock: Optional[ContextManager] = None, known: Sequence[Tuple[str, Optional[str], np.ndarray]] = ()
                      ) -> List[Tuple[str, Optional[str], np.ndarray]]:
    """(label, region id, descriptor) of each labelled region of one image, for
    :meth:`PrototypeStore.replace_annotation`; the same object twice (e.g. its brush and its
    polygon) counts once, also when it is in ``known`` (the items of the annotation's other
    images). Regions that cannot be read are passed to ``on_skip`` and left out."""
    items: List[Tuple[str, Optional[str], np.ndarray]] = []
    with lock or contextlib.nullcontext():
        emb = predictor.embed(image)
        for r in regions:
            mask, box = r.mask, r.prompt.box
            try:
                if mask is None and box is None:  # keypoint: segment it to find the object
                    o = predictor.predict(emb, r.prompt, vocabulary=["object"], top_k=1).objects[0]
                    mask, box = (o.mask, o.bbox_xyxy) if o.area else (None, None)
                d = region_descriptor(emb, mask=mask, box=box)
            except (PromptError, ValueError) as e:
                on_skip(r, e)
                continue
            if any(lab == r.label and float(np.dot(v, d)) > SAME_OBJECT_COSINE for lab, _, v in [*known, *items]):
                continue
            items.append((r.label, r.region_id, d))
    return items
