"""The backend: Label Studio JSON in, :class:`ovsam_core.Predictor` calls, Label Studio JSON out.

Web-framework free (:mod:`.app` routes requests here). One :class:`Backend` per process; the model
loads on first use (or in the background, ``warmup``); model calls are serialised by a lock.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import (ImageCache, JobQueue, LazyModel, LoadedImage, Metrics, ProjectOptions, PromptError,
                        PrototypeCache, PrototypeSet, PrototypeStore, __version__, label_prompts, overrun_note)

from . import outputs
from .auto import prelabel_task
from .errors import BackendError, project_key  # noqa: F401 - BackendError, project_key re-exported
from .fetch import ImageFetchError, ImageFetcher
from .learning import LearningMixin
from .labels import LabelConfigError, ProjectConfig, parse_label_config
from .regions import PromptRegion, RegionError, batch_prompts, interactive_prompt, prompt_source, region_kind

log = logging.getLogger("ovsam.label_studio")

#: what to do when a /predict batch outlasts Label Studio's ML_TIMEOUT_PREDICT
LATE_HINT = ("Label Studio waits ML_TIMEOUT_PREDICT seconds for /predict; pre-label large projects with "
             "`ovsam label-studio prelabel --url <Label Studio URL> --project <id>`, or select fewer tasks")


class Backend(LearningMixin):
    """Open-vocabulary SAM behind Label Studio's ML-backend protocol.

    Args:
        settings: a :class:`~.settings.Settings`.
        predictor: an :class:`ovsam_core.Predictor` to use instead of loading ``settings.model``.
        fetcher: an :class:`~.fetch.ImageFetcher` (tests inject one).
    """

    def __init__(self, settings, predictor=None, fetcher: Optional[ImageFetcher] = None) -> None:
        self.s = settings
        self._model = LazyModel(self._load, predictor)
        self.model_lock = threading.Lock()
        self.fetcher = fetcher or ImageFetcher(settings)
        self.metrics = Metrics()
        self.store = PrototypeStore(settings.db_path, settings.max_prototypes) if settings.learn else None
        self._protos = PrototypeCache(self.store)
        self._images = ImageCache(settings.image_cache_bytes, settings.max_image_pixels, settings.max_image_bytes,
                                  "OVSAM_LS_MAX_IMAGE_PIXELS", self.metrics)
        self._jobs = JobQueue(self._run_job, 256, self._job_failed)  # learning (webhooks)
        self._params = ProjectOptions(str(Path(settings.model_dir) / "projects"), settings.auto_settings, "extra_params",
                                      '{"auto": "find", "points_per_side": 16}')

    # ================================================================== model
    @property
    def model_version(self) -> str:
        vocab = "labels" if not self.s.vocab else str(self.s.vocab).replace("/", "_")[-40:]
        return f"ovsam-{self.s.model}-{vocab}-{__version__}"

    @property
    def loaded(self) -> bool:
        return self._model.value is not None

    @property
    def _predictor(self):
        return self._model.value

    def _load(self):
        log.info("loading model %s on %s", self.s.model, self.s.device)
        p = self.s.load_predictor()
        log.info("model %s loaded", self.s.model)
        return p

    def predictor(self):
        """The :class:`ovsam_core.Predictor`, loaded on first use (once per process)."""
        try:
            return self._model.get()
        except Exception as e:  # noqa: BLE001 - reported on /health and to Label Studio
            raise BackendError(f"the model {self.s.model!r} could not be loaded: {e}", 503) from None

    def warmup(self) -> threading.Thread:
        """Load the model in a background thread (call after the worker process has started)."""
        return self._model.start(lambda e: log.error("the model %r could not be loaded: %s", self.s.model, e))

    def status(self) -> Dict[str, Any]:
        return {"status": "UP", "model_class": "ovsam", "model": self.s.model, "model_loaded": self.loaded,
                "model_version": self.model_version, **({"model_error": self._model.error} if self._model.error else {})}

    # ================================================================== images
    def load_task_image(self, ref: Any, task_id: Optional[int]) -> LoadedImage:
        if not isinstance(ref, str):
            raise ImageFetchError(f"the task's image value must be a URL string, got {type(ref).__name__}", 422)
        key = f"{task_id}|{ref}" if "://" in ref and not ref.startswith("http") else ref
        return self._images.load(key, lambda: self.fetcher.fetch(ref, task_id))

    # ================================================================== protocol: setup
    def setup(self, payload: Mapping, persist: bool = True) -> Dict[str, Any]:
        """Check the label config; keep the project's ``extra_params`` (pre-labelling choices)."""
        schema = payload.get("schema") or payload.get("label_config")
        if schema:
            try:
                parse_label_config(schema)
            except LabelConfigError as e:
                raise BackendError(str(e), 400) from None
        try:
            if "project" in payload:
                self._params.set(project_key(payload.get("project")), payload.get("extra_params"), persist)
            else:
                self._params.parse(payload.get("extra_params"))
        except ValueError as e:
            raise BackendError(str(e), 400) from None
        return {"model_version": self.model_version}

    def auto_settings(self, project: str):
        """The :class:`ovsam_core.AutoSettings` of ``project`` (settings + its ``extra_params``)."""
        try:
            return self.s.auto_settings(self._params.get(project))
        except ValueError as e:
            raise BackendError(f"extra_params: {e}", 400) from None

    # ================================================================== protocol: predict
    def predict(self, payload: Mapping) -> Dict[str, Any]:
        tasks = payload.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
            raise BackendError("'tasks' must be a list of task objects", 400)
        config = payload.get("label_config") or payload.get("schema")
        if not config:
            raise BackendError("'label_config' is missing", 400)
        try:
            cfg = parse_label_config(config)
        except LabelConfigError as e:
            raise BackendError(str(e), 400) from None
        params = payload.get("params") if isinstance(payload.get("params"), Mapping) else {}
        context = params.get("context") if "context" in params else payload.get("context")
        project = project_key(payload.get("project"))
        t0 = time.time()
        if isinstance(context, Mapping) and context.get("result"):
            log.debug("interactive context: %s", str(context)[:4000])
            if not tasks:
                raise BackendError("interactive request without a task", 400)
            if not isinstance(context.get("result"), list):
                raise BackendError("'context.result' must be a list of regions", 400)
            try:
                result = self._interactive(tasks[0], cfg, context["result"], project)
            except (ImageFetchError, RegionError, PromptError) as e:
                self.metrics.add("errors")
                raise BackendError(str(e), getattr(e, "status", 422)) from None
            results = [result]
            self.metrics.add("interactive_requests")
        else:
            results = []
            for n, task in enumerate(tasks):
                late = overrun_note(t0, n, len(tasks), self.s.ml_timeout, LATE_HINT, log, unit="task",
                                    limit_name="ML_TIMEOUT_PREDICT")
                if late:
                    results += [{"error": late, "task": t.get("id"), "model_version": self.model_version}
                                for t in tasks[n:]]
                    break
                try:
                    results.append(self._batch(task, cfg, project))
                except Exception as e:  # noqa: BLE001 - one bad task must not fail the batch
                    self.metrics.add("errors")
                    if isinstance(e, (ImageFetchError, RegionError, PromptError, BackendError)):
                        msg = str(e)
                        log.warning("task %s: no prediction: %s", task.get("id"), msg)
                    else:
                        msg = f"internal error ({type(e).__name__}); see the backend's log"
                        log.exception("task %s: no prediction", task.get("id"))
                    # no "result" key: Label Studio logs it and stores nothing for this task
                    results.append({"error": msg, "task": task.get("id"), "model_version": self.model_version})
            self.metrics.add("batch_tasks", len(tasks))
        self.metrics.add("predict_seconds", time.time() - t0)
        self.metrics.add("predict_requests")
        return {"results": results, "model_version": self.model_version}

    def _interactive(self, task: Mapping, cfg: ProjectConfig, items: Sequence, project: str) -> Dict[str, Any]:
        to_names = [it.get("to_name") for it in items if isinstance(it, Mapping) and region_kind(it) in ("keypoint", "rectangle")]
        if not to_names:
            log.info("task %s: the interactive context holds no keypoint or rectangle: nothing to segment", task.get("id"))
            return self._task_result([])
        to_name = to_names[-1]
        img = self._image_for(task, cfg, to_name)
        pr = interactive_prompt([it for it in items if isinstance(it, Mapping)], img.width, img.height, to_name)
        if pr is None:
            log.info("task %s: only negative clicks so far: nothing to segment", task.get("id"))
            return self._task_result([])
        regions, scores = self._segment(task, cfg, img, [pr], project, interactive=True)
        return self._task_result(regions, scores)

    def _batch(self, task: Mapping, cfg: ProjectConfig, project: str) -> Dict[str, Any]:
        items, source = prompt_source(task)
        if not items:
            auto = self.auto_settings(project)
            if auto.mode != "off":
                regions, scores = prelabel_task(self, task, cfg, auto)
                if regions:
                    return self._task_result(regions, scores)
                msg = f"pre-labelling ({auto.mode}) found no object of the project's labels"
            else:
                msg = ("no rectangles or keypoints in its annotations or predictions: nothing to segment (draw boxes "
                       "or clicks, or import box predictions, then retrieve predictions again)")
            log.info("task %s: %s", task.get("id"), msg)
            # no "result": Label Studio stores no (empty) prediction, so a later retrieval runs again
            return {"error": msg, "task": task.get("id"), "model_version": self.model_version}
        regions_all: List[Dict[str, Any]] = []
        scores_all: List[float] = []
        n_prompts = 0
        to_names = []
        for it in items:
            tn = it.get("to_name") if isinstance(it, Mapping) else None
            if tn and tn not in to_names and cfg.outputs_for(tn):
                to_names.append(tn)
        for to_name in to_names:
            img = self._image_for(task, cfg, to_name)
            prompts = batch_prompts(items, img.width, img.height, to_name)
            if not prompts:
                continue
            n_prompts += len(prompts)
            regions, scores = self._segment(task, cfg, img, prompts, project, interactive=False)
            regions_all += regions
            scores_all += scores
        log.info("task %s: %d prompts from %s -> %d regions", task.get("id"), n_prompts, source, len(regions_all))
        if not regions_all:  # nothing to store: an empty prediction would stop later retrievals
            return {"error": f"no region from the {n_prompts} prompts of {source}", "task": task.get("id"),
                    "model_version": self.model_version}
        return self._task_result(regions_all, scores_all)

    def _image_for(self, task: Mapping, cfg: ProjectConfig, to_name: str) -> LoadedImage:
        key = cfg.image_key(to_name)
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        if key not in data:
            raise ImageFetchError(f"the task has no data field {key!r} (the label config's <Image value=\"${key}\">)", 422)
        tid = task.get("id")
        return self.load_task_image(data[key], int(tid) if isinstance(tid, int) else None)

    def _task_result(self, regions: List[Dict[str, Any]], scores: Sequence[float] = ()) -> Dict[str, Any]:
        score = float(np.mean(scores)) if len(scores) else 0.0
        return {"result": regions, "score": round(score, 6), "model_version": self.model_version}

    # ================================================================== segmentation + labels
    def prototypes(self, project: str) -> PrototypeSet:
        return self._protos.get(project, lambda: self.model_key)

    @property
    def model_key(self) -> str:
        return "|".join(self.predictor().model_key)

    def _segment(self, task: Mapping, cfg: ProjectConfig, img: LoadedImage, prompts: Sequence[PromptRegion],
                 project: str, interactive: bool) -> Tuple[List[Dict[str, Any]], List[float]]:
        """:func:`ovsam_core.label_prompts` with the output controls' labels; their regions."""
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        controls = {c.name: c for c in cfg.outputs_for(prompts[0].to_name)}
        labels = {n: c.labels_for(data) for n, c in controls.items()}
        if not any(labels.values()):
            raise BackendError("no labels for the output controls (dynamic labels missing from the task?)", 422)
        objects = label_prompts(
            self.predictor(), img, [p.prompt for p in prompts], labels, vocabulary=self.s.vocab,
            prototypes=self.prototypes(project), smart_labels=[p.label for p in prompts] if interactive else None,
            top_k=self.s.top_k, label_source=self.s.label_source, prototype_weight=self.s.prototype_weight,
            lock=self.model_lock)
        regions: List[Dict[str, Any]] = []
        for o in objects:
            if o.area == 0:
                log.info("task %s: empty mask for prompt %s", task.get("id"), o.prompt.to_json())
                continue
            for name in controls.keys() - o.choices.keys():
                log.info("task %s: no evidence for any label of %r (add predicted_values to its <Label>s, "
                         "or annotate a few objects)", task.get("id"), name)
            for name, (label, score, top) in o.choices.items():
                out, note = outputs.object_regions(controls[name], o.mask, o.bbox_xyxy, label, img.width, img.height,
                                                   score, outputs.region_meta(top, o.vocabulary_top_k if self.s.vocab
                                                                              else None))
                if note:
                    log.info("task %s: polygons of %s (smaller parts are in the brush output)", task.get("id"), note)
                regions += out
        self.metrics.add("regions", len(regions))
        return regions, [o.score for o in objects if o.choices]

    # ================================================================== metrics
    def metrics_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"model": self.s.model, "model_version": self.model_version, "model_loaded": self.loaded,
                               **self.metrics.report(self._predictor), "learning_queue": self._jobs.qsize()}
        out["image_cache"] = {"entries": len(self._images), "bytes": self._images.nbytes}
        if self.store is not None:
            out["prototypes"] = self.store.counts()
        return out

    def close(self) -> None:
        self._jobs.close()
