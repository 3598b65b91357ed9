"""``label_with_prompts``: label a dataset or view from its prompts, resumably.

Everything that can be checked is checked before the model is loaded or an image is read:
the prompt field (exists, holds Detections/Keypoints), the output field (not the prompt field;
absent, or allowed by ``overwrite``/``skip_existing``; a Detections field), the vocabulary.

Each sample is written as soon as it is done, whole (its ``Detections`` replace the field's
value; nothing is appended), so an interrupted run keeps what it finished, and running again
with ``skip_existing=True`` does only the samples whose field is still empty: no duplicates,
nothing lost.
"""
from __future__ import annotations

import datetime
import time
from typing import Any, Callable, Dict, List, Optional

from ovsam_core import ImageError, load_image, prelabel, run_batch

from .auto import Classes, auto_settings, field_classes, host_labels, to_detections
from .model import OVSAMModel, get_predictor
from .prompts import check_prompt_field
from .store import get_run, record_run, root
from .vocab import VocabInput, describe, get_vocabulary, parse_vocabulary

ProgressFn = Callable[[float, str], None]
MAX_PROBLEMS = 20


class LabelFieldExistsError(ValueError):
    """The output field already holds labels and neither overwrite nor skip_existing was given."""


def check_label_field(samples, label_field: str, prompt_field: str, overwrite: bool, skip_existing: bool) -> int:
    """Number of samples of ``samples`` that already have ``label_field``; errors if not allowed."""
    if not label_field or not isinstance(label_field, str):
        raise ValueError(f"give an output field name, got {label_field!r}")
    if label_field == prompt_field:
        raise ValueError(f"the output field {label_field!r} is the prompt field; choose another name")
    ds = root(samples)
    f = ds.get_field(label_field)
    if f is None:
        return 0
    doc = getattr(getattr(f, "document_type", None), "__name__", None)
    if doc != "Detections":
        raise LabelFieldExistsError(f"field {label_field!r} exists and holds {doc or type(f).__name__}, not "
                                    "Detections; choose another output field")
    existing = samples.exists(label_field).count()
    if existing and not (overwrite or skip_existing):
        raise LabelFieldExistsError(f"{existing} sample(s) already have labels in {label_field!r}; pass "
                                    "skip_existing=True to label only the others (resume), overwrite=True to "
                                    "replace them, or choose another output field")
    return existing


def label_with_prompts(
    samples,
    prompt_field: str,
    label_field: str = "ovsam",
    *,
    model: str = "ovsam-lvis",
    vocabulary: VocabInput = None,
    mode: Optional[str] = None,
    top_k: int = 5,
    skip_existing: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    dtype: str = "fp32",
    weights_dir=None,
    point_labels_attr: str = "point_labels",
    predictor=None,
    progress: Optional[ProgressFn] = None,
    skip_failures: bool = True,
) -> Dict[str, Any]:
    """Segment and name every prompt of ``prompt_field``; write ``Detections`` to ``label_field``.

    Args:
        samples: a FiftyOne dataset or view (the App's selection works too).
        prompt_field: a Detections (box prompts) or Keypoints (point prompts) field.
        label_field: output field (Detections).
        model / mode / top_k / device / dtype / weights_dir / point_labels_attr: see
            :class:`~ovsam_plugins.fiftyone.model.OVSAMModelConfig`.
        vocabulary: preset, file, folder, list or text (:mod:`~ovsam_plugins.fiftyone.vocab`);
            default the dataset's (:func:`set_vocabulary`), else the model's.
        skip_existing: leave samples that already have ``label_field`` alone (resume).
        overwrite: allow replacing existing labels in ``label_field``.
        predictor: reuse a loaded :class:`ovsam_core.Predictor`.
        progress: ``fn(fraction, message)`` called after each sample.
        skip_failures: count unreadable images and go on (else raise).
    Returns:
        a summary: ``samples`` (in the view), ``processed``, ``labelled``, ``objects``,
        ``skipped_existing``, ``skipped_no_prompts``, ``invalid_prompts``, ``failed``,
        ``problems`` (first messages), ``seconds``, ``label_field``, ``vocabulary``, ``model``.
    """
    import fiftyone as fo

    t0 = time.time()
    if samples.media_type != "image":
        raise ValueError(f"ovsam labels images; this collection holds {samples.media_type} samples")
    check_prompt_field(samples, prompt_field)
    existing = check_label_field(samples, label_field, prompt_field, overwrite, skip_existing)
    if vocabulary is None or (isinstance(vocabulary, str) and not vocabulary.strip()):
        source = get_vocabulary(samples)
    else:
        source = parse_vocabulary(vocabulary, samples, prompt_field)

    ovm = OVSAMModel(model=model, vocabulary=source, mode=mode, top_k=top_k, device=device, dtype=dtype,
                     weights_dir=None if weights_dir is None else str(weights_dir),
                     point_labels_attr=point_labels_attr, predictor=predictor)
    ovm.class_names()  # loads the model and the text classifier: fail before any sample

    ds = root(samples)
    if ds.get_field(label_field) is None:
        ds.add_sample_field(label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    todo = samples.exists(label_field, False) if (skip_existing and existing) else samples
    ids: List[str] = todo.values("id")
    run = {"prompt_field": prompt_field, "model": ovm.predictor.name, "mode": mode or "default",
           "top_k": int(top_k), "vocabulary": describe(source), "finished": False,
           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    record_run(ds, label_field, run)

    counts = {"processed": 0, "labelled": 0, "objects": 0, "skipped_no_prompts": 0, "invalid_prompts": 0,
              "failed": 0}
    problems: List[str] = []
    n = len(ids)
    view = samples.select(ids, ordered=True).select_fields(prompt_field)
    for i, sample in enumerate(view.iter_samples()):
        try:
            dets, st = ovm.predict_sample(load_image(sample.filepath), sample, [prompt_field])
        except Exception as e:  # noqa: BLE001 - an unreadable image must not stop a long run
            if not skip_failures:
                raise
            counts["failed"] += 1
            if len(problems) < MAX_PROBLEMS:
                problems.append(f"{sample.filepath}: {e}")
        else:
            counts["processed"] += 1
            counts["invalid_prompts"] += len(st["problems"])
            problems += st["problems"][:max(0, MAX_PROBLEMS - len(problems))]
            target = ds[sample.id]
            if dets is None:
                counts["skipped_no_prompts"] += 1
                if overwrite and target[label_field] is not None:
                    target[label_field] = None
                    target.save()
            else:
                target[label_field] = dets
                target.save()
                counts["labelled"] += 1
                counts["objects"] += len(dets.detections)
        if progress is not None:
            progress((i + 1) / n, f"{i + 1}/{n} samples, {counts['objects']} objects")

    run.update(finished=True, seconds=round(time.time() - t0, 3))
    record_run(ds, label_field, run)
    return {"samples": len(samples), **counts, "skipped_existing": existing if skip_existing else 0,
            "problems": problems, "seconds": run["seconds"], "label_field": label_field,
            "vocabulary": run["vocabulary"], "model": run["model"]}


def _check_output(samples, label_field: str, classes_field: Optional[str]) -> None:
    if not label_field or not isinstance(label_field, str):
        raise ValueError(f"give an output field name, got {label_field!r}")
    if label_field == classes_field:
        raise ValueError(f"the output field {label_field!r} is the classes field; choose another name")
    f = root(samples).get_field(label_field)
    kind = getattr(getattr(f, "document_type", None), "__name__", None)
    if f is not None and kind != "Detections":
        raise LabelFieldExistsError(f"field {label_field!r} exists and holds {kind or type(f).__name__}, not "
                                    "Detections; choose another output field")


def label_everything(samples, label_field: str = "ovsam_auto", *, classes: Classes = None,
                     classes_field: Optional[str] = None, mode: Optional[str] = None, points_per_side: int = 32,
                     min_score: float = 0.5, model: str = "ovsam-lvis", vocabulary=None, device: str = "auto",
                     dtype: str = "fp32", overwrite: bool = False, predictor=None,
                     progress: Optional[Callable[[float, str], None]] = None,
                     should_stop: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
    """Pre-label ``samples`` with no prompt; ``Detections`` into ``label_field`` (see the module doc).

    Args:
        samples: a dataset or view (the App's selection works too).
        classes / classes_field: the classes to label (see the module doc); none: everything mode
            keeps every object under its class name.
        mode: ``find`` | ``everything`` (default: find with classes, everything without).
        points_per_side / min_score: the grid of point prompts and the minimum label probability.
        model / vocabulary / device / dtype: the ovsam model; ``vocabulary`` names everything
            mode's objects (default the model's).
        overwrite: relabel every sample (else a run with other settings into a field that holds
            labels is refused, and a run with the same settings resumes).
        progress: ``fn(fraction, message)`` after each sample; should_stop: ``fn() -> True`` ends early.
    Returns:
        ``{"samples", "labelled", "objects", "skipped_existing", "failed", "problems", "cancelled",
        "seconds", "label_field", "classes", "mode"}``.
    """
    import fiftyone as fo

    t0 = time.time()
    if samples.media_type != "image":
        raise ValueError(f"ovsam labels images; this collection holds {samples.media_type} samples")
    _check_output(samples, label_field, classes_field)
    labels = host_labels(field_classes(samples, classes_field) if classes_field and not classes else classes)
    settings = auto_settings(labels, mode, points_per_side=points_per_side, min_score=min_score)
    vocab = parse_vocabulary(vocabulary)
    pred = predictor or get_predictor(model, device=device, dtype=dtype)
    run = {"prompt_field": None, "classes_field": classes_field, "model": pred.name, "vocabulary": describe(vocab),
           "classes": [lab.name for lab in labels or []], "settings": settings.to_dict()}
    ds = root(samples)
    existing = set(samples.exists(label_field).values("id")) if ds.get_field(label_field) is not None else set()
    old = get_run(ds, label_field) or {}
    same = {k: old.get(k) for k in run} == run
    if existing and not (overwrite or same):
        raise LabelFieldExistsError(
            f"{len(existing)} sample(s) already have labels in {label_field!r} from another run (or other "
            "settings); pass overwrite=True to relabel them, or choose another output field")
    if ds.get_field(label_field) is None:
        ds.add_sample_field(label_field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Detections)
    record_run(ds, label_field, {**run, "finished": False,
                                 "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    objects = [0]

    def one(item):
        sid, path = item
        res = prelabel(pred, load_image(path), settings, labels, vocabulary=vocab)
        sample = ds[sid]
        sample[label_field] = to_detections(res)
        sample.save()
        objects[0] += len(res)
        return len(res)

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), f"{done}/{total} samples, {objects[0]} objects")

    items = list(zip(samples.values("id"), samples.values("filepath")))
    rep = run_batch(items, one, key=lambda it: it[0], done=None if overwrite else (lambda k: k in existing),
                    name=lambda it: it[1], errors=(ImageError, OSError), desc="ovsam", unit="sample",
                    show_progress=False, progress=report, should_stop=should_stop)
    seconds = round(time.time() - t0, 3)
    record_run(ds, label_field, {**run, "finished": not rep.cancelled and not rep.failed, "seconds": seconds})
    return {"samples": rep.total, "labelled": rep.processed, "objects": objects[0], "skipped_existing": rep.skipped,
            "failed": len(rep.failed), "problems": [f"{k}: {m}" for k, m in rep.failed[:20]],
            "cancelled": rep.cancelled, "seconds": seconds, "label_field": label_field,
            "classes": run["classes"], "mode": settings.mode}
