"""Learning from annotations (Label Studio webhooks and ``/train``): prototypes of labelled regions.

A mixin of :class:`~.backend.Backend`: on ``ANNOTATION_CREATED/UPDATED`` the regions of the
annotation become prototypes (:mod:`ovsam_core.hosts.fewshot`) of their labels, in a background
thread (Label Studio waits 1 s at most for a webhook).
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import LabelledRegion, region_prototypes

from .errors import BackendError, project_key
from .fetch import ImageFetchError
from .labels import LabelConfigError, LabelMapper, parse_label_config
from .regions import RegionError, region_geometry, region_kind, region_labels

log = logging.getLogger("ovsam.label_studio")


class LearningMixin:
    """Webhook and training handlers; needs ``s``, ``store``, ``metrics``, ``predictor()``,
    ``model_lock``, ``model_key``, ``_image_for`` and the job queue (``_jobs``) set up by ``Backend``."""

    # ================================================================== learning
    def webhook(self, payload: Mapping) -> Dict[str, Any]:
        action = str(payload.get("action") or "")
        self.metrics.add("webhooks")
        if not self.s.learn:
            return {"status": "ignored", "action": action, "reason": "learning is disabled"}
        project = project_key(payload.get("project"))
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            ann = payload.get("annotation")
            task = payload.get("task")
            proj = payload.get("project") if isinstance(payload.get("project"), Mapping) else {}
            config = proj.get("label_config") or payload.get("label_config")
            if not isinstance(ann, Mapping) or not isinstance(task, Mapping) or not config:
                raise BackendError(f"{action} needs 'annotation', 'task' and 'project.label_config'", 400)
            return self._submit("learn", (project, config, task, ann), action)
        if action in ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED"):
            anns = payload.get("annotations") or ([payload.get("annotation")] if payload.get("annotation") else [])
            n = 0
            for a in anns:
                if isinstance(a, Mapping) and a.get("id") is not None:
                    n += self.store.delete_annotation(project, str(a["id"]))
            return {"status": "ok", "action": action, "deleted": n}
        if action == "PROJECT_DELETED":
            return {"status": "ok", "action": action, "deleted": self.store.delete_project(project)}
        if action == "START_TRAINING":
            return self._submit("train_from_ls", (project,), action)
        return {"status": "ignored", "action": action}

    def train(self, payload: Mapping) -> Dict[str, Any]:
        """``POST /train`` (Label Studio's legacy training call): every annotated task at once."""
        if not self.s.learn:
            return {"status": "ignored", "reason": "learning is disabled"}
        tasks = payload.get("annotations")
        config = payload.get("label_config")
        if not isinstance(tasks, list) or not config:
            raise BackendError("/train needs 'annotations' (tasks) and 'label_config'", 400)
        project = project_key(payload.get("project"))
        return self._submit("learn_tasks", (project, config, tasks), "train")

    def _submit(self, kind: str, args: Tuple, action: str) -> Dict[str, Any]:
        if not self.s.learn_async:
            n = getattr(self, "_job_" + kind)(*args)
            return {"status": "ok", "action": action, "prototypes": n}
        if not self._jobs.put((kind, args)):
            self.metrics.add("webhooks_dropped")
            log.warning("learning queue full: %s dropped", action)
            return {"status": "dropped", "action": action}
        return {"status": "queued", "action": action}

    def _run_job(self, job: Tuple[str, Tuple]) -> None:
        getattr(self, "_job_" + job[0])(*job[1])

    def _job_failed(self, job: Any, e: Exception) -> None:
        self.metrics.add("learn_errors")
        log.warning("learning failed: %s: %s", type(e).__name__, e)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until queued learning jobs are done (tests, shutdown)."""
        self._jobs.flush(timeout)

    def _job_learn_tasks(self, project: str, config: str, tasks: Sequence[Mapping]) -> int:
        n = 0
        for t in tasks:
            for a in (t.get("annotations") or []) if isinstance(t, Mapping) else []:
                try:
                    n += self._job_learn(project, config, t, a)
                except Exception as e:  # noqa: BLE001
                    self.metrics.add("learn_errors")
                    log.warning("task %s: learning failed: %s", t.get("id"), e)
        return n

    def _job_train_from_ls(self, project: str) -> int:
        """START_TRAINING: learn from every annotated task of the project (read from Label Studio)."""
        if not self.s.label_studio_url:
            log.warning("START_TRAINING: set LABEL_STUDIO_URL to let the backend read the project's annotations")
            return 0
        pid = int(project)
        cfg_raw = self.fetcher.fetch(f"/api/projects/{pid}")  # JSON with label_config
        label_config = json.loads(cfg_raw).get("label_config")
        raw = self.fetcher.fetch(f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=false")
        tasks = json.loads(raw)
        return self._job_learn_tasks(project, label_config, tasks if isinstance(tasks, list) else [])

    def _job_learn(self, project: str, config: str, task: Mapping, ann: Mapping) -> int:
        """Store the prototypes of one annotation (replacing the ones it had)."""
        ann_id = str(ann.get("id"))
        if ann.get("was_cancelled"):
            self.store.delete_annotation(project, ann_id)
            return 0
        try:
            cfg = parse_label_config(config)
        except LabelConfigError as e:
            log.info("annotation %s: label config not usable: %s", ann_id, e)
            return 0
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        mapper = LabelMapper(cfg.labels(data))
        by_image: Dict[str, List[Tuple[Mapping, str]]] = {}
        for it in ann.get("result") or []:
            if not isinstance(it, Mapping) or region_kind(it) is None:
                continue
            labs = region_labels(it)
            lab = mapper.find(labs[0]) if labs else None
            if lab is None:
                continue
            by_image.setdefault(str(it.get("to_name")), []).append((it, lab.name))
        items: List[Tuple[str, Optional[str], np.ndarray]] = []
        for to_name, regs in by_image.items():
            try:
                img = self._image_for(task, cfg, to_name)
            except (ImageFetchError, LabelConfigError) as e:
                log.info("annotation %s: image not readable: %s", ann_id, e)
                continue
            regions: List[LabelledRegion] = []
            for it, label in regs:
                try:
                    prompt, mask = region_geometry(it, img.width, img.height)
                except RegionError as e:
                    log.info("annotation %s: region %s skipped: %s", ann_id, it.get("id"), e)
                    continue
                if prompt is not None:
                    regions.append(LabelledRegion(label, it.get("id"), prompt, mask))
            items += region_prototypes(self.predictor(), img, regions, lock=self.model_lock, known=items,
                                       on_skip=lambda r, e: log.info("annotation %s: region %s skipped: %s", ann_id,
                                                                     r.region_id, e))
        n = self.store.replace_annotation(project, self.model_key, ann_id, str(task.get("id")), items)
        self.metrics.add("prototypes_learned", n)
        log.info("annotation %s (task %s): %d prototypes stored", ann_id, task.get("id"), n)
        return n

