"""The backend: Label Studio JSON in, :class:`ovsam_core.Predictor` calls, Label Studio JSON out.

Web-framework free (:mod:`.app` routes requests here). One :class:`Backend` per process; the model
loads on first use (or in the background, ``warmup``); model calls are serialised by a lock.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ovsam_core import (BytesLRU, ImageError, JobQueue, choose_label, ImageTooLargeError, LazyModel, LoadedImage, Metrics, PromptError,
                        PrototypeSet, PrototypeStore, __version__, blend_probabilities, load_image_limited,
                        region_descriptor, rss_bytes)

from . import outputs
from .auto import late_note, prelabel_task
from .errors import BackendError, project_key  # noqa: F401 - BackendError, project_key re-exported
from .fetch import ImageFetchError, ImageFetcher
from .learning import LearningMixin
from .labels import LabelConfigError, LabelMapper, ProjectConfig, ProjectLabel, parse_label_config
from .regions import PromptRegion, RegionError, batch_prompts, interactive_prompt, prompt_source, region_kind

log = logging.getLogger("ovsam.label_studio")

#: alternatives of a large vocabulary that are mapped onto project labels
MAX_MAPPED_CLASSES = 2000


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
        self._protos: Dict[str, Tuple[int, PrototypeSet]] = {}
        self._protos_lock = threading.Lock()
        self._images: BytesLRU[LoadedImage] = BytesLRU(settings.image_cache_bytes, lambda im: im.rgb.nbytes)
        self._jobs = JobQueue(self._run_job, 256, self._job_failed)  # learning (webhooks)
        self._params: Dict[str, Dict[str, Any]] = {}  # project -> extra_params

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
        from ovsam_core import Predictor

        log.info("loading model %s on %s", self.s.model, self.s.device)
        p = Predictor(self.s.model, weights_dir=self.s.weights_dir, weights=self.s.weights, device=self.s.device,
                      dtype=self.s.dtype, cache_bytes=self.s.cache_bytes, download=self.s.download, progress=False)
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
        hit = self._images.get(key)
        if hit is not None:
            self.metrics.add("image_cache_hits")
            return hit
        data = self.fetcher.fetch(ref, task_id)
        try:
            img = load_image_limited(data, self.s.max_image_pixels, self.s.max_image_bytes)
        except ImageTooLargeError as e:
            raise ImageFetchError(f"{e} (OVSAM_LS_MAX_IMAGE_PIXELS)", 413) from None
        except ImageError as e:
            raise ImageFetchError(f"unreadable image: {e}", 422) from None
        self._images.put(key, img)
        return img

    # ================================================================== protocol: setup
    def setup(self, payload: Mapping, persist: bool = True) -> Dict[str, Any]:
        """Check the label config; keep the project's ``extra_params`` (pre-labelling choices)."""
        schema = payload.get("schema") or payload.get("label_config")
        if schema:
            try:
                parse_label_config(schema)
            except LabelConfigError as e:
                raise BackendError(str(e), 400) from None
        extra = payload.get("extra_params")
        if isinstance(extra, str) and extra.strip():
            try:
                extra = json.loads(extra)
            except ValueError as e:
                raise BackendError(f"extra_params is not JSON: {e}", 400) from None
        if extra and not isinstance(extra, Mapping):
            raise BackendError('extra_params must be a JSON object, e.g. {"auto": "find", "points_per_side": 16}', 400)
        try:
            self.s.auto_settings(extra)
        except ValueError as e:
            raise BackendError(f"extra_params: {e}", 400) from None
        if "project" in payload:
            project = project_key(payload.get("project"))
            self._params[project] = dict(extra or {})
            if persist:
                path = self._params_path(project)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(self._params[project]))
        return {"model_version": self.model_version}

    def _params_path(self, project: str) -> Path:
        return Path(self.s.model_dir) / "projects" / f"{int(project) if project.isdigit() else 0}.json"

    def auto_settings(self, project: str):
        """The :class:`ovsam_core.AutoSettings` of ``project`` (settings + its ``extra_params``)."""
        extra = self._params.get(project)
        if extra is None:
            path = self._params_path(project)
            extra = json.loads(path.read_text()) if path.is_file() else {}
        try:
            return self.s.auto_settings(extra)
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
                late = late_note(t0, n, len(tasks), self.s.ml_timeout)
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
    def _mapper(self, labels: Sequence[ProjectLabel]) -> Tuple[LabelMapper, Any]:
        """The mapper of the project's labels and the vocabulary to predict with."""
        if not self.s.vocab:
            m = LabelMapper(labels)
            vocab = m.vocabulary()
            return m, vocab or None
        clf = self.predictor().classifier(self.s.vocab)
        return LabelMapper(labels, list(clf.vocabulary.names)), self.s.vocab

    def prototypes(self, project: str) -> PrototypeSet:
        if self.store is None:
            return PrototypeSet((), np.zeros((0, 0), np.float32))
        gen = self.store.generation(project)
        with self._protos_lock:
            hit = self._protos.get(project)
            if hit is not None and hit[0] == gen:
                return hit[1]
        pset = self.store.load(project, self.model_key)
        with self._protos_lock:
            self._protos[project] = (gen, pset)
        return pset

    @property
    def model_key(self) -> str:
        return "|".join(self.predictor().model_key)

    def _segment(self, task: Mapping, cfg: ProjectConfig, img: LoadedImage, prompts: Sequence[PromptRegion],
                 project: str, interactive: bool) -> Tuple[List[Dict[str, Any]], List[float]]:
        to_name = prompts[0].to_name
        data = task.get("data") if isinstance(task.get("data"), Mapping) else {}
        controls = cfg.outputs_for(to_name)
        labels_by_control = {c.name: c.labels_for(data) for c in controls}
        all_labels = [lab for c in controls for lab in labels_by_control[c.name]]
        if not all_labels:
            raise BackendError("no labels for the output controls (dynamic labels missing from the task?)", 422)
        pred = self.predictor()
        mapper, vocab = self._mapper(all_labels)
        pset = self.prototypes(project)
        w, h = img.width, img.height
        with self.model_lock:
            emb = pred.embed(img)
            n_classes = len(pred.classifier(vocab)) if vocab is not None else 0
            if vocab is None:
                objects = None
            else:
                objects = pred.predict(emb, [p.prompt for p in prompts], vocabulary=vocab,
                                       top_k=max(1, min(n_classes, MAX_MAPPED_CLASSES)))
            if objects is None:  # nothing embeddable: masks only (labels from prototypes / smart tool)
                objects = pred.predict(emb, [p.prompt for p in prompts], vocabulary=["object"], top_k=1)
                no_text = True
            else:
                no_text = False
            descriptors: List[Optional[np.ndarray]] = []
            if len(pset) >= 2:
                for p, o in zip(prompts, objects):
                    try:
                        descriptors.append(region_descriptor(emb, mask=None if p.prompt.box is not None else o.mask,
                                                             box=p.prompt.box or o.bbox_xyxy))
                    except ValueError:
                        descriptors.append(None)
            else:
                descriptors = [None] * len(prompts)
        regions: List[Dict[str, Any]] = []
        scores: List[float] = []
        for p, o, d in zip(prompts, objects, descriptors):
            if o.area == 0:
                log.info("task %s: empty mask for prompt %s", task.get("id"), p.prompt.to_json())
                continue
            p_text = np.zeros(len(mapper.labels)) if no_text else mapper.label_probs(o.top_k)
            sims = pset.similarities(d) if d is not None else {}
            obj_scores = []
            for c in controls:
                names = [lab.name for lab in labels_by_control[c.name]]
                choice = choose_label(names, mapper, p_text, sims, p.label if interactive else None, top_k=self.s.top_k,
                                      label_source=self.s.label_source, prototype_weight=self.s.prototype_weight)
                if choice is None:
                    log.info("task %s: no evidence for any label of %r (add predicted_values to its <Label>s, "
                             "or annotate a few objects)", task.get("id"), c.name)
                    continue
                label, score, top = choice
                out, note = outputs.object_regions(c, o.mask, o.bbox_xyxy, label, w, h, score,
                                                   outputs.region_meta(top, o.top_k if self.s.vocab else None))
                if note:
                    log.info("task %s: polygons of %s (smaller parts are in the brush output)", task.get("id"), note)
                regions += out
                obj_scores.append(score)
            if obj_scores:
                scores.append(float(np.mean(obj_scores)))
        self.metrics.add("regions", len(regions))
        return regions, scores

    def _blend(self, p: np.ndarray, sims: Sequence[Optional[float]]) -> np.ndarray:  # with the configured weight
        return blend_probabilities(p, sims, self.s.prototype_weight)

    # ================================================================== metrics
    def metrics_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"model": self.s.model, "model_version": self.model_version, "model_loaded": self.loaded,
                               "uptime_seconds": round(time.time() - self.metrics.started, 3),
                               "rss_bytes": rss_bytes(), "counters": self.metrics.snapshot(),
                               "learning_queue": self._jobs.qsize()}
        if self._predictor is not None:
            cache = self._predictor.cache
            out["embedding_cache"] = {"entries": len(cache), "bytes": int(cache.nbytes),
                                      "encoder_calls": int(self._predictor.encoder_calls)}
        out["image_cache"] = {"entries": len(self._images), "bytes": self._images.nbytes}
        if self.store is not None:
            out["prototypes"] = self.store.counts()
        return out

    def close(self) -> None:
        self._jobs.close()
