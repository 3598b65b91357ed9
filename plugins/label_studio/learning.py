"""Learning from annotations (Label Studio webhooks and ``/train``): prototypes of labelled regions.

A mixin of :class:`~.backend.Backend`: Label Studio's payloads become calls of its
:class:`ovsam_core.PrototypeLearner` (``learner``): on ``ANNOTATION_CREATED/UPDATED`` the
labelled regions of the annotation become prototypes of their labels, in a background thread
(Label Studio waits 1 s at most for a webhook).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

from ovsam_core import LabelledRegion, ServiceError

from .fetch import ImageFetchError
from .labels import LabelConfigError, LabelMapper, ProjectConfig, parse_label_config
from .regions import RegionError, region_geometry, region_kind, region_labels

log = logging.getLogger("ovsam.label_studio")


def project_key(project: Any) -> str:
    """``"12.1700000000"`` (what Label Studio sends to /predict), ``12`` or ``{"id": 12}`` -> ``"12"``."""
    if isinstance(project, Mapping):
        project = project.get("id")
    return "0" if project is None else (str(project).split(".", 1)[0].strip() or "0")


class LearningMixin:
    """Webhook and training handlers; needs ``s``, ``learner``, ``metrics``, ``fetcher`` and
    ``_image_for`` set up by ``Backend``."""

    def webhook(self, payload: Mapping) -> Dict[str, Any]:
        action = str(payload.get("action") or "")
        self.metrics.add("webhooks")
        if not self.s.learn:
            return {"status": "ignored", "action": action, "reason": "learning is disabled"}
        project = project_key(payload.get("project"))
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            ann, task = payload.get("annotation"), payload.get("task")
            proj = payload.get("project") if isinstance(payload.get("project"), Mapping) else {}
            config = proj.get("label_config") or payload.get("label_config")
            if not isinstance(ann, Mapping) or not isinstance(task, Mapping) or not config:
                raise ServiceError(f"{action} needs 'annotation', 'task' and 'project.label_config'", 400)
            return self.learner.submit(action, lambda: self._learn(project, config, task, ann))
        if action in ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED"):
            anns = payload.get("annotations") or ([payload.get("annotation")] if payload.get("annotation") else [])
            ids = [a["id"] for a in anns if isinstance(a, Mapping) and a.get("id") is not None]
            return {"status": "ok", "action": action, "deleted": self.learner.forget(project, ids)}
        if action == "PROJECT_DELETED":
            return {"status": "ok", "action": action, "deleted": self.learner.forget(project, whole_project=True)}
        if action == "START_TRAINING":
            return self.learner.submit(action, lambda: self._learn_from_label_studio(project))
        return {"status": "ignored", "action": action}

    def train(self, payload: Mapping) -> Dict[str, Any]:
        """``POST /train`` (Label Studio's legacy training call): every annotated task at once."""
        if not self.s.learn:
            return {"status": "ignored", "reason": "learning is disabled"}
        tasks, config = payload.get("annotations"), payload.get("label_config")
        if not isinstance(tasks, list) or not config:
            raise ServiceError("/train needs 'annotations' (tasks) and 'label_config'", 400)
        project = project_key(payload.get("project"))
        return self.learner.submit("train", lambda: self._learn_tasks(project, config, tasks))

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until queued learning jobs are done (tests, shutdown)."""
        self.learner.flush(timeout)

    def _learn_tasks(self, project: str, config: str, tasks: Sequence[Mapping]) -> int:
        return self.learner.learn_each((f"task {t.get('id')}", lambda t=t, a=a: self._learn(project, config, t, a))
                                       for t in tasks if isinstance(t, Mapping) for a in t.get("annotations") or [])

    def _learn_from_label_studio(self, project: str) -> int:
        """START_TRAINING: learn from every annotated task of the project (read from Label Studio)."""
        if not self.s.label_studio_url:
            log.warning("START_TRAINING: set LABEL_STUDIO_URL to let the backend read the project's annotations")
            return 0
        pid = int(project)
        label_config = json.loads(self.fetcher.fetch(f"/api/projects/{pid}")).get("label_config")
        tasks = json.loads(self.fetcher.fetch(f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=false"))
        return self._learn_tasks(project, label_config, tasks if isinstance(tasks, list) else [])

    def _learn(self, project: str, config: str, task: Mapping, ann: Mapping) -> int:
        """Store the prototypes of one annotation (replacing the ones it had)."""
        ann_id = str(ann.get("id"))
        if ann.get("was_cancelled"):
            self.learner.forget(project, [ann_id])
            return 0
        try:
            cfg = parse_label_config(config)
        except LabelConfigError as e:
            log.info("annotation %s: label config not usable: %s", ann_id, e)
            return 0
        n = self.learner.learn(project, ann_id, str(task.get("id")), self._labelled_images(cfg, task, ann),
                               lambda r, e: log.info("annotation %s: region %s skipped: %s", ann_id, r.region_id, e))
        log.info("annotation %s (task %s): %d prototypes stored", ann_id, task.get("id"), n)
        return n

    def _labelled_images(self, cfg: ProjectConfig, task: Mapping, ann: Mapping) -> Iterator[Tuple[Any, List[LabelledRegion]]]:
        """(image, its regions with a project label) of each image of the annotation that can be read."""
        ann_id = ann.get("id")
        mapper = LabelMapper(cfg.labels(task.get("data") if isinstance(task.get("data"), Mapping) else {}))
        by_image: Dict[str, List[Tuple[Mapping, str]]] = {}
        for it in ann.get("result") or []:
            labs = region_labels(it) if isinstance(it, Mapping) and region_kind(it) is not None else []
            lab = mapper.find(labs[0]) if labs else None
            if lab is not None:
                by_image.setdefault(str(it.get("to_name")), []).append((it, lab.name))
        for to_name, regs in by_image.items():
            try:
                img = self._image_for(task, cfg, to_name)
            except (ImageFetchError, LabelConfigError) as e:
                log.info("annotation %s: image not readable: %s", ann_id, e)
                continue
            regions = []
            for it, label in regs:
                try:
                    prompt, mask = region_geometry(it, img.width, img.height)
                except RegionError as e:
                    log.info("annotation %s: region %s skipped: %s", ann_id, it.get("id"), e)
                    continue
                if prompt is not None:
                    regions.append(LabelledRegion(label, it.get("id"), prompt, mask))
            yield img, regions
