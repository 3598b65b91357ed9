"""Label a dataset or view resumably: from its prompts (:func:`label_with_prompts`) or with no
prompt (:func:`label_everything`, see :mod:`~ovsam_plugins.fiftyone.auto`).

Everything that can be checked is checked before the model is loaded or an image is read (the
source field, the output field, the vocabulary or classes). Both run one loop
(``ovsam_core.run_batch``): each sample is written as soon as it is done, whole (its
``Detections`` replace the field's value), and the run is recorded in
``dataset.info["ovsam"]["runs"]``, so an interrupted run keeps what it finished and running
again does only the samples whose field is still empty: no duplicates, nothing lost.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set

from ovsam_core import (RunOutcome, check_output_field, labels_from_classes, load_image, prelabel, prelabel_settings,
                        recorded_run, run_summary, same_run)

from .auto import Classes, field_classes, to_detections
from . import model as model_mod
from .model import OVSAMModel
from .prompts import check_prompt_field
from .store import field_kind, get_run, record_run, root
from .vocab import VocabInput, describe, get_vocabulary, parse_vocabulary

ProgressFn = Callable[[float, str], None]


class LabelFieldExistsError(ValueError):
    """The output field already holds labels and neither overwrite nor skip_existing was given."""


def existing_labels(samples, label_field: str, source_field: Optional[str], source: str = "prompt") -> Set[str]:
    """Ids of the samples that already have ``label_field``; errors for a bad output field."""
    if samples.media_type != "image":
        raise ValueError(f"ovsam labels images; this collection holds {samples.media_type} samples")
    check_output_field(label_field, source_field, source)
    kind = field_kind(root(samples), label_field)
    if kind is None:
        return set()
    if kind != "Detections":
        raise LabelFieldExistsError(f"field {label_field!r} exists and holds {kind}, not Detections; choose "
                                    "another output field")
    return set(samples.exists(label_field).values("id"))


def _run(samples, label_field: str, run: Dict[str, Any], one: Callable, done: Set[str], errors,
         progress: Optional[ProgressFn], should_stop=None) -> RunOutcome:
    """``one((sample, path)) -> objects`` on every sample not in ``done``, recorded in the run record."""
    import fiftyone as fo

    ds = root(samples)
    if ds.get_field(label_field) is None:
        ds.add_sample_field(label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    items = list(zip(samples.values("id"), samples.values("filepath")))
    return recorded_run(items, lambda it: one((ds[it[0]], it[1])), run, lambda rec: record_run(ds, label_field, rec),
                        key=lambda it: it[0], done=done.__contains__, name=lambda it: it[1], errors=errors,
                        progress=progress, should_stop=should_stop)


def label_with_prompts(samples, prompt_field: str, label_field: str = "ovsam", *, model: str = "ovsam-lvis",
                       vocabulary: VocabInput = None, mode: Optional[str] = None, top_k: int = 5,
                       skip_existing: bool = False, overwrite: bool = False, device: str = "auto", dtype: str = "auto",
                       weights_dir=None, point_labels_attr: str = "point_labels", predictor=None,
                       progress: Optional[ProgressFn] = None, skip_failures: bool = True) -> Dict[str, Any]:
    """Segment and name every prompt of ``prompt_field``; write ``Detections`` to ``label_field``.

    Args:
        samples: a dataset or view (the App's selection works too).
        prompt_field: a Detections (box prompts) or Keypoints (point prompts) field.
        model / vocabulary / mode / top_k / device / dtype / weights_dir / point_labels_attr: see
            :class:`~ovsam_plugins.fiftyone.model.OVSAMModelConfig`; vocabulary default: the
            dataset's (:func:`set_vocabulary`), else the model's.
        skip_existing: leave samples that have ``label_field`` alone (resume); overwrite: allow
            replacing them. predictor: a loaded :class:`ovsam_core.Predictor` to use.
        progress: ``fn(fraction, message)`` after each sample; skip_failures: count unreadable
            images and go on (else raise).
    Returns:
        ``samples``, ``processed``, ``labelled``, ``objects``, ``skipped_existing``,
        ``skipped_no_prompts``, ``invalid_prompts``, ``failed``, ``problems`` (first messages),
        ``seconds``, ``label_field``, ``vocabulary``, ``model``.
    """
    check_prompt_field(samples, prompt_field)
    existing = existing_labels(samples, label_field, prompt_field)
    if existing and not (overwrite or skip_existing):
        raise LabelFieldExistsError(f"{len(existing)} sample(s) already have labels in {label_field!r}; pass "
                                    "skip_existing=True to label only the others (resume), overwrite=True to "
                                    "replace them, or choose another output field")
    blank = vocabulary is None or (isinstance(vocabulary, str) and not vocabulary.strip())
    source = get_vocabulary(samples) if blank else parse_vocabulary(vocabulary, samples, prompt_field)
    ovm = OVSAMModel(model=model, vocabulary=source, mode=mode, top_k=top_k, device=device, dtype=dtype,
                     weights_dir=None if weights_dir is None else str(weights_dir),
                     point_labels_attr=point_labels_attr, predictor=predictor)
    ovm.class_names()  # loads the model and the text classifier: fail before any sample
    run = {"prompt_field": prompt_field, "model": ovm.predictor.name, "mode": mode or "default",
           "top_k": int(top_k), "vocabulary": describe(source)}
    counts = {"skipped_no_prompts": 0, "invalid_prompts": 0}
    problems: List[str] = []

    def one(item) -> Optional[int]:
        sample, path = item
        dets, st = ovm.predict_sample(load_image(path), sample, [prompt_field])
        counts["invalid_prompts"] += len(st["problems"])
        problems.extend(st["problems"])
        if dets is None:
            counts["skipped_no_prompts"] += 1
            if not (overwrite and sample[label_field] is not None):
                return None
        sample[label_field] = dets
        sample.save()
        return None if dets is None else len(dets.detections)

    outcome = _run(samples, label_field, run, one, existing if skip_existing else set(),
                   (Exception,) if skip_failures else (), progress)
    return {**run_summary(outcome, problems), **counts, "label_field": label_field,
            "vocabulary": run["vocabulary"], "model": run["model"]}


def label_everything(samples, label_field: str = "ovsam_auto", *, classes: Classes = None,
                     classes_field: Optional[str] = None, mode: Optional[str] = None, points_per_side: int = 32,
                     min_score: float = 0.5, model: str = "ovsam-lvis", vocabulary=None, device: str = "auto",
                     dtype: str = "auto", overwrite: bool = False, predictor=None,
                     progress: Optional[ProgressFn] = None,
                     should_stop: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Pre-label ``samples`` with no prompt; ``Detections`` into ``label_field`` (see :mod:`.auto`).

    Args:
        classes / classes_field: the classes to label (none: everything mode keeps every object).
        mode: ``find`` | ``everything`` (default: find with classes, everything without);
            points_per_side / min_score: the grid of point prompts, the minimum label probability.
        model / vocabulary / device / dtype / predictor: the model; ``vocabulary`` names the
            objects of everything mode (default the model's).
        overwrite: relabel every sample (else other settings into a field with labels are
            refused and the same settings resume).
        progress: ``fn(fraction, message)`` after each sample; should_stop: ``fn() -> True`` ends early.
    Returns:
        ``samples``, ``labelled``, ``objects``, ``skipped_existing``, ``failed``, ``problems``,
        ``cancelled``, ``seconds``, ``label_field``, ``classes``, ``mode``.
    """
    existing = existing_labels(samples, label_field, classes_field, "classes")
    labels = labels_from_classes(field_classes(samples, classes_field) if classes_field and not classes else classes)
    settings = prelabel_settings(labels, mode, points_per_side=points_per_side, min_score=min_score)
    vocab = parse_vocabulary(vocabulary)
    pred = predictor or model_mod.get_predictor(model, device=device, dtype=dtype)
    run = {"prompt_field": None, "classes_field": classes_field, "model": pred.name, "vocabulary": describe(vocab),
           "classes": [lab.name for lab in labels or []], "settings": settings.to_dict()}
    if existing and not overwrite and not same_run(get_run(samples, label_field), run):
        raise LabelFieldExistsError(
            f"{len(existing)} sample(s) already have labels in {label_field!r} from another run (or other "
            "settings); pass overwrite=True to relabel them, or choose another output field")

    def one(item) -> int:
        sample, path = item
        res = prelabel(pred, load_image(path), settings, labels, vocabulary=vocab)
        sample[label_field] = to_detections(res)
        sample.save()
        return len(res)

    outcome = _run(samples, label_field, run, one, set() if overwrite else existing, (OSError, ValueError), progress,
                   should_stop)
    return {**run_summary(outcome), "label_field": label_field, "classes": run["classes"],
            "mode": settings.mode}
