"""The backend: Label Studio JSON in, :class:`ovsam_core.Predictor` calls, Label Studio JSON out.

Web-framework free (:mod:`.app` routes requests here). One :class:`Backend` per process; the model
(:class:`ovsam_core.ServedModel`) loads on first use (or in the background, ``model.warmup``); model
calls are serialised by its lock.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import (AutoSettings, HostLabel, ImageCache, LoadedImage, ProjectOptions, PromptError, PromptObject,
                        PrototypeLearner, ServedModel, ServiceError, __version__, answer_each, label_prompts,
                        labelled_images, merge_labels, prelabel_outputs, service_errors)

from . import outputs
from .fetch import ImageFetchError, ImageFetcher
from .labels import LabelConfigError, ProjectConfig, parse_label_config
from .regions import (PromptRegion, RegionError, batch_prompts, interactive_prompt, prompt_items, prompt_source,
                      region_geometry, region_kind, region_labels)

log = logging.getLogger("ovsam.label_studio")

#: a request the backend refuses; answered as ``{"error": message}`` with ``status``
BackendError = ServiceError
#: the errors of a task that are its own (answered with their message; anything else is an internal error)
TASK_ERRORS = (ImageFetchError, RegionError, PromptError, ServiceError)
#: what to do when a /predict batch outlasts Label Studio's ML_TIMEOUT_PREDICT
LATE_HINT = ("Label Studio waits ML_TIMEOUT_PREDICT seconds for /predict; pre-label large projects with "
             "`ovsam label-studio prelabel --url <Label Studio URL> --project <id>`, or select fewer tasks")


def project_key(project: Any) -> str:
    """``"12.1700000000"`` (what Label Studio sends to /predict), ``12`` or ``{"id": 12}`` -> ``"12"``."""
    if isinstance(project, Mapping):
        project = project.get("id")
    return "0" if project is None else (str(project).split(".", 1)[0].strip() or "0")


def _data(task: Mapping) -> Mapping:
    """The task's ``data`` (empty when it has none)."""
    return task.get("data") if isinstance(task.get("data"), Mapping) else {}


class Backend:
    """Open-vocabulary SAM behind Label Studio's ML-backend protocol: ``/setup``, ``/predict`` and,
    learning from annotations, ``/webhook`` and ``/train`` (prototypes of labelled regions, learned
    by the :class:`ovsam_core.PrototypeLearner` in a background thread: Label Studio waits 1 s at
    most for a webhook).

    Args:
        settings: a :class:`~.settings.Settings`.
        predictor: an :class:`ovsam_core.Predictor` to use instead of loading ``settings.model``.
        fetcher: an :class:`~.fetch.ImageFetcher` (tests inject one).
    """

    def __init__(self, settings, predictor=None, fetcher: Optional[ImageFetcher] = None) -> None:
        self.s = settings
        self.model = ServedModel(settings.model, settings.load_predictor, predictor, log)
        self.metrics = self.model.metrics
        self.fetcher = fetcher or ImageFetcher(settings)
        self.learner = PrototypeLearner(settings.db_path if settings.learn else None, self.model,
                                        settings.max_prototypes, settings.learn_async, log=log)
        self._images = ImageCache(settings.image_cache_bytes, settings.max_image_pixels, settings.max_image_bytes,
                                  "OVSAM_LS_MAX_IMAGE_PIXELS", self.metrics)
        self._params = ProjectOptions(str(Path(settings.model_dir) / "projects"), settings.auto_settings, "extra_params",
                                      '{"auto": "find", "points_per_side": 16}')

    # ================================================================== model
    @property
    def model_version(self) -> str:
        vocab = "labels" if not self.s.vocab else str(self.s.vocab).replace("/", "_")[-40:]
        return f"ovsam-{self.s.model}-{vocab}-{__version__}"

    def status(self) -> Dict[str, Any]:
        return self.model.status(model_class="ovsam", model_version=self.model_version)

    # ================================================================== images
    def _image_for(self, task: Mapping, cfg: ProjectConfig, to_name: str) -> LoadedImage:
        """The image of ``task`` that ``to_name`` (an ``<Image>``) shows (cached by reference)."""
        key, tid = cfg.image_key(to_name), task.get("id") if isinstance(task.get("id"), int) else None
        if key not in _data(task):
            raise ImageFetchError(f"the task has no data field {key!r} (the label config's <Image value=\"${key}\">)", 422)
        ref = _data(task)[key]
        if not isinstance(ref, str):
            raise ImageFetchError(f"the task's image value must be a URL string, got {type(ref).__name__}", 422)
        cache_key = f"{tid}|{ref}" if "://" in ref and not ref.startswith("http") else ref
        return self._images.load(cache_key, lambda: self.fetcher.fetch(ref, tid))

    # ================================================================== protocol: setup
    def setup(self, payload: Mapping, persist: bool = True) -> Dict[str, Any]:
        """Check the label config; keep the project's ``extra_params`` (pre-labelling choices)."""
        schema = payload.get("schema") or payload.get("label_config")
        with service_errors():  # a LabelConfigError too
            if schema:
                parse_label_config(schema)
            if "project" in payload:
                self._params.set(project_key(payload.get("project")), payload.get("extra_params"), persist)
            else:
                self._params.parse(payload.get("extra_params"))
        return {"model_version": self.model_version}

    def auto_settings(self, project: str) -> AutoSettings:
        """The :class:`ovsam_core.AutoSettings` of ``project`` (settings + its ``extra_params``)."""
        with service_errors(prefix="extra_params: "):
            return self.s.auto_settings(self._params.get(project))

    # ================================================================== protocol: predict
    def predict(self, payload: Mapping) -> Dict[str, Any]:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
            raise BackendError("'tasks' must be a list of task objects", 400)
        config = payload.get("label_config") or payload.get("schema")
        if not config:
            raise BackendError("'label_config' is missing", 400)
        cfg = parse_label_config(config)  # a LabelConfigError is a 400
        params = payload.get("params") if isinstance(payload.get("params"), Mapping) else {}
        context = params.get("context") if "context" in params else payload.get("context")
        project = project_key(payload.get("project"))
        with self.model.timed("predict"):
            if isinstance(context, Mapping) and context.get("result"):
                log.debug("interactive context: %s", str(context)[:4000])
                if not tasks:
                    raise BackendError("interactive request without a task", 400)
                if not isinstance(context.get("result"), list):
                    raise BackendError("'context.result' must be a list of regions", 400)
                with service_errors((ImageFetchError, RegionError, PromptError), 422, metrics=self.metrics):
                    results = [self._interactive(tasks[0], cfg, context["result"], project)]
                self.metrics.add("interactive_requests")
            else:
                # a failed task has no "result" key: Label Studio logs it and stores nothing for it
                results = answer_each(tasks, lambda t: self._batch(t, cfg, project), self._no_result,
                                      user_errors=TASK_ERRORS, limit=self.s.ml_timeout,
                                      limit_name="ML_TIMEOUT_PREDICT", hint=LATE_HINT, log=log, metrics=self.metrics,
                                      unit="task", name=lambda t: t.get("id"), failure="no prediction")
                self.metrics.add("batch_tasks", len(tasks))
        return {"results": results, "model_version": self.model_version}

    def _no_result(self, task: Mapping, message: str) -> Dict[str, Any]:
        return {"error": message, "task": task.get("id"), "model_version": self.model_version}

    def _task_result(self, regions: List[Dict[str, Any]], objects: Sequence[PromptObject] = ()) -> Dict[str, Any]:
        scores = [o.score for o in objects if o.choices]
        score = float(np.mean(scores)) if scores else 0.0
        return {"result": regions, "score": round(score, 6), "model_version": self.model_version}

    def _interactive(self, task: Mapping, cfg: ProjectConfig, items: Sequence, project: str) -> Dict[str, Any]:
        to_names = [it.get("to_name") for it in prompt_items(items)]
        if not to_names:
            log.info("task %s: the interactive context holds no keypoint or rectangle: nothing to segment", task.get("id"))
            return self._task_result([])
        regions, objects = self._label_images(task, cfg, to_names[-1:], project, lambda img, tn: [
            pr for pr in [interactive_prompt(items, img.width, img.height, tn)] if pr is not None], interactive=True)
        if not objects:  # interactive_prompt gave none
            log.info("task %s: only negative clicks so far: nothing to segment", task.get("id"))
        return self._task_result(regions, objects)

    def _batch(self, task: Mapping, cfg: ProjectConfig, project: str) -> Dict[str, Any]:
        items, source = prompt_source(task)
        if not items:
            auto = self.auto_settings(project)
            if auto.mode != "off":
                regions, objects = self._label_images(task, cfg, dict.fromkeys(c.to_name for c in cfg.output_controls),
                                                      project, auto=auto)
                if regions:
                    return self._task_result(regions, objects)
                msg = f"pre-labelling ({auto.mode}) found no object of the project's labels"
            else:
                msg = ("no rectangles or keypoints in its annotations or predictions: nothing to segment (draw boxes "
                       "or clicks, or import box predictions, then retrieve predictions again)")
            log.info("task %s: %s", task.get("id"), msg)
            return self._no_result(task, msg)  # no "result": a later retrieval runs again
        to_names = [tn for tn in dict.fromkeys(it.get("to_name") for it in items) if tn and cfg.outputs_for(tn)]
        regions, objects = self._label_images(task, cfg, to_names, project,
                                              lambda img, tn: batch_prompts(items, img.width, img.height, tn))
        log.info("task %s: %d prompts from %s -> %d regions", task.get("id"), len(objects), source, len(regions))
        if not regions:  # nothing to store: an empty prediction would stop later retrievals
            return self._no_result(task, f"no region from the {len(objects)} prompts of {source}")
        return self._task_result(regions, objects)

    # ================================================================== segmentation + labels
    def _label_images(self, task: Mapping, cfg: ProjectConfig, to_names: Sequence[str], project: str,
                      prompts_of: Optional[Callable[[LoadedImage, str], List[PromptRegion]]] = None,
                      auto: Optional[AutoSettings] = None, interactive: bool = False
                      ) -> Tuple[List[Dict[str, Any]], List[PromptObject]]:
        """(regions, objects) of the task's images ``to_names``: the objects of each image's prompts
        (``prompts_of(image, to_name)``, :meth:`_segment`) or, with ``auto``, pre-labelled by
        :func:`ovsam_core.prelabel_outputs` (``find``: the project's labels as queries against the
        background vocabulary; ``everything``: the model's vocabulary mapped onto them); each object
        becomes regions in every output control it has a label for (:func:`.outputs.object_regions`)."""
        regions: List[Dict[str, Any]] = []
        found: List[PromptObject] = []
        for to_name in to_names:
            controls = {c.name: c for c in cfg.outputs_for(to_name)}
            labels = {n: c.labels_for(_data(task)) for n, c in controls.items()}
            if auto is not None and not any(labels.values()):
                continue
            img = self._image_for(task, cfg, to_name)
            if auto is not None:
                res, objects = prelabel_outputs(self.model.get(), img, auto, labels, vocabulary=self.s.vocab,
                                                lock=self.model.lock)
                log.info("task %s: %s on %r: %d objects of %d labels (%d unmapped)", task.get("id"), auto.mode,
                         to_name, len(res), len(merge_labels(*labels.values())), res.unmapped)
            else:
                prompts = prompts_of(img, to_name)
                objects = self._segment(task, img, prompts, labels, project, interactive) if prompts else []
            found += objects
            for o in objects:
                for name, (label, score, top) in o.choices.items():
                    meta = outputs.region_meta(top, o.vocabulary_top_k if auto is not None or self.s.vocab else None)
                    out, note = outputs.object_regions(controls[name], o.mask, o.bbox_xyxy, label, img.width, img.height,
                                                       score, meta)
                    if note:
                        log.info("task %s: polygons of %s (smaller parts are in the brush output)", task.get("id"), note)
                    regions += out
        self.metrics.add("regions", len(regions))
        return regions, found

    def _segment(self, task: Mapping, img: LoadedImage, prompts: Sequence[PromptRegion],
                 labels: Mapping[str, Sequence[HostLabel]], project: str, interactive: bool) -> List[PromptObject]:
        """:func:`ovsam_core.label_prompts` with the output controls' ``labels``."""
        if not any(labels.values()):
            raise BackendError("no labels for the output controls (dynamic labels missing from the task?)", 422)
        objects = label_prompts(
            self.model.get(), img, [p.prompt for p in prompts], labels, vocabulary=self.s.vocab,
            prototypes=self.learner.prototypes(project), smart_labels=[p.label for p in prompts] if interactive else None,
            top_k=self.s.top_k, label_source=self.s.label_source, prototype_weight=self.s.prototype_weight,
            lock=self.model.lock)
        for o in objects:
            if o.area == 0:
                log.info("task %s: empty mask for prompt %s", task.get("id"), o.prompt.to_json())
            for name in (labels.keys() - o.choices.keys()) if o.area else ():
                log.info("task %s: no evidence for any label of %r (add predicted_values to its <Label>s, "
                         "or annotate a few objects)", task.get("id"), name)
        return objects

    # ================================================================== protocol: learning
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
                raise BackendError(f"{action} needs 'annotation', 'task' and 'project.label_config'", 400)
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
            raise BackendError("/train needs 'annotations' (tasks) and 'label_config'", 400)
        project = project_key(payload.get("project"))
        return self.learner.submit("train", lambda: self._learn_tasks(project, config, tasks))

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
        regions = [(str(it.get("to_name")), next(iter(region_labels(it)), None), it.get("id"), it)
                   for it in ann.get("result") or [] if region_kind(it) is not None]
        images = labelled_images(regions, cfg.labels(_data(task)), lambda to_name: self._image_for(task, cfg, to_name),
                                 lambda it, img: region_geometry(it, img.width, img.height),
                                 (ImageFetchError, LabelConfigError, RegionError), log, f"annotation {ann_id}")
        n = self.learner.learn(project, ann_id, str(task.get("id")), images,
                               lambda r, e: log.info("annotation %s: region %s skipped: %s", ann_id, r.region_id, e))
        log.info("annotation %s (task %s): %d prototypes stored", ann_id, task.get("id"), n)
        return n

    # ================================================================== metrics
    def metrics_json(self) -> Dict[str, Any]:
        return {**self.model.report(model_version=self.model_version), **self.learner.report(),
                "image_cache": {"entries": len(self._images), "bytes": self._images.nbytes}}

    def close(self) -> None:
        self.learner.close()
