"""Few-shot learning of a service: annotations in, a project's prototypes out (stored, cached, queued).

A labelling host tells its service when an annotation is created, updated or deleted (Label
Studio's webhooks, a FiftyOne or napari "learn" action); the service keeps each labelled
region's descriptor as a prototype of its label (:mod:`ovsam_core.hosts.fewshot`), per project
and model, and re-ranks later predictions with them. :class:`PrototypeLearner` is that
bookkeeping: the store (SQLite, or none when learning is off), the per-project sets predictions
read (reloaded only after a change), and a job queue so that a host's hook answers at once and
the model work happens in a background thread. The host turns its payloads into
:class:`~ovsam_core.hosts.labelprompts.LabelledRegion` lists (original-image pixels) per image;
:func:`labelled_images` does so given how the host reads an image and a region's geometry.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from ..prompts import Prompt
from .fewshot import PrototypeSet, PrototypeStore
from .labelmap import HostLabel, LabelMapper
from .labelprompts import LabelledRegion, PrototypeCache, region_prototypes
from .modelservice import ServedModel
from .serving import JobQueue

#: a learning job: runs the work, returns the number of prototypes it stored
Job = Callable[[], int]
#: a host's region (e.g. one item of a Label Studio annotation's ``result``)
R = TypeVar("R")


def labelled_images(regions: Iterable[Tuple[Hashable, Optional[str], Optional[str], R]], labels: Sequence[HostLabel],
                    image_of: Callable[[Hashable], Any],
                    geometry_of: Callable[[R, Any], Tuple[Optional[Prompt], Optional[np.ndarray]]],
                    errors: Tuple[type, ...] = (ValueError,), log: Optional[logging.Logger] = None,
                    name: str = "annotation") -> Iterator[Tuple[Any, List[LabelledRegion]]]:
    """``(image, its labelled regions)`` per image of one annotation, for :meth:`PrototypeLearner.learn`.

    Args:
        regions: ``(image key, the region's label as the host wrote it or None, region id, region)``;
            a region whose label is none of ``labels`` (:class:`~.labelmap.LabelMapper`: value, alias
            or predicted value) is left out, the others are grouped by image key (first seen first).
        image_of: the image of a key (e.g. a :class:`~ovsam_core.LoadedImage`, with ``width`` and
            ``height``), read lazily, one image at a time.
        geometry_of: ``(prompt, mask)`` of a region on its image, in original-image pixels (mask:
            (H, W) bool or None); a None prompt (e.g. an empty mask) leaves the region out.
        errors: what ``image_of`` / ``geometry_of`` raise for an unreadable image or region: it is
            skipped with a log line that starts with ``name``; other errors propagate.
    """
    log = log or logging.getLogger(__name__)
    mapper = LabelMapper(labels)
    by_image: Dict[Hashable, List[Tuple[R, str, Optional[str]]]] = {}
    for key, raw, region_id, region in regions:
        label = mapper.find(raw) if raw is not None else None
        if label is not None:
            by_image.setdefault(key, []).append((region, label.name, region_id))
    for key, group in by_image.items():
        try:
            image = image_of(key)
        except errors as e:
            log.info("%s: image not readable: %s", name, e)
            continue
        out = []
        for region, label_name, region_id in group:
            try:
                prompt, mask = geometry_of(region, image)
            except errors as e:
                log.info("%s: region %s skipped: %s", name, region_id, e)
                continue
            if prompt is not None:
                out.append(LabelledRegion(label_name, region_id, prompt, mask))
        yield image, out


class PrototypeLearner:
    """Prototypes of a service's projects, learned from annotations with ``model``'s predictor.

    Args:
        path: the SQLite file of the :class:`PrototypeStore`; None: learning is off (nothing is
            stored, :meth:`prototypes` are empty, :attr:`store` is None).
        model: the :class:`ServedModel` whose predictor computes descriptors (under its lock);
            its ``metrics`` count ``prototypes_learned``, ``learn_errors`` and ``webhooks_dropped``.
        max_per_label: prototypes kept per label and project (the oldest go first).
        background: :meth:`submit` queues jobs for a background thread (False: runs them at once).
        queue_size: jobs waiting at most; more are dropped (:meth:`submit` says so).
        log: where failures are logged.
    """

    def __init__(self, path: Optional[Union[str, Path]], model: ServedModel, max_per_label: int = 100,
                 background: bool = True, queue_size: int = 256, log: Optional[logging.Logger] = None) -> None:
        self.store = PrototypeStore(path, max_per_label) if path is not None else None
        self.model, self.background = model, background
        self.log = log or logging.getLogger(__name__)
        self._sets = PrototypeCache(self.store)
        self._jobs = JobQueue(lambda job: job[1](), queue_size, self._failed)

    def model_key(self) -> str:
        """The loaded model's key: prototypes of different models are never mixed."""
        return "|".join(self.model.get().model_key)

    def prototypes(self, project: str) -> PrototypeSet:
        """The project's prototypes for the current model (cached until they change)."""
        return self._sets.get(project, self.model_key)

    # ------------------------------------------------------------------ jobs
    def submit(self, action: str, job: Job) -> Dict[str, Any]:
        """Run ``job`` for ``action`` (e.g. a webhook's name) at once or in the background; what a
        host's hook answers: ``{"status": "ok", "action", "prototypes": n}`` (at once),
        ``{"status": "queued", "action"}``, or ``{"status": "dropped", "action"}`` (queue full)."""
        if not self.background:
            return {"status": "ok", "action": action, "prototypes": job()}
        if not self._jobs.put((action, job)):
            self.model.metrics.add("webhooks_dropped")
            self.log.warning("learning queue full: %s dropped", action)
            return {"status": "dropped", "action": action}
        return {"status": "queued", "action": action}

    def _failed(self, job: Tuple[str, Job], e: Exception) -> None:
        self.model.metrics.add("learn_errors")
        self.log.warning("learning failed: %s: %s", type(e).__name__, e)

    def learn_each(self, jobs: Iterable[Tuple[str, Job]]) -> int:
        """Run each ``(name, job)`` (e.g. every annotation of a project); a failing one is counted
        and logged under its name and the others go on. Returns the prototypes stored in all."""
        n = 0
        for name, job in jobs:
            try:
                n += job()
            except Exception as e:  # noqa: BLE001 - one bad annotation must not stop the others
                self.model.metrics.add("learn_errors")
                self.log.warning("%s: learning failed: %s", name, e)
        return n

    def flush(self, timeout: float = 60.0) -> None:
        """Wait (at most ``timeout`` s) until the queued jobs are done (tests, shutdown)."""
        self._jobs.flush(timeout)

    def close(self) -> None:
        """Stop the background thread after the queued jobs."""
        self._jobs.close()

    # ------------------------------------------------------------------ prototypes
    def learn(self, project: str, annotation_id: str, task_id: Optional[str],
              images: Iterable[Tuple[Any, Sequence[LabelledRegion]]],
              on_skip: Callable[[LabelledRegion, Exception], None] = lambda r, e: None) -> int:
        """Replace the prototypes of one annotation by those of its labelled regions.

        Args:
            images: ``(image, regions)`` per image of the annotation (an image: anything the
                predictor embeds); a lazy iterable may skip images it cannot read.
            on_skip: called with each region that cannot be read (left out).
        Returns:
            The prototypes stored; the same object twice (e.g. its brush and its polygon, or on
            two images) counts once.
        """
        if self.store is None:
            raise ValueError("learning is off: there is no prototype store")
        items: List[Tuple[str, Optional[str], np.ndarray]] = []
        for image, regions in images:
            items += region_prototypes(self.model.get(), image, regions, lock=self.model.lock, known=items,
                                       on_skip=on_skip)
        n = self.store.replace_annotation(project, self.model_key(), annotation_id, task_id, items)
        self.model.metrics.add("prototypes_learned", n)
        return n

    def forget(self, project: str, annotation_ids: Iterable[str] = (), *, whole_project: bool = False) -> int:
        """Delete the prototypes of ``annotation_ids`` (or of the whole project); how many went."""
        if self.store is None:
            return 0
        if whole_project:
            return self.store.delete_project(project)
        return sum(self.store.delete_annotation(project, str(a)) for a in annotation_ids)

    def report(self) -> Dict[str, Any]:
        """For a metrics endpoint: ``learning_queue`` (jobs waiting) and, when learning is on,
        ``prototypes`` (project -> count)."""
        out: Dict[str, Any] = {"learning_queue": self._jobs.qsize()}
        if self.store is not None:
            out["prototypes"] = self.store.counts()
        return out
