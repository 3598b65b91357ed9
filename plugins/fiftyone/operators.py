"""The ``@ovsam/ovsam`` operators: ``label_with_prompts``, ``label_everything``, ``evaluate``, ``set_vocabulary``.

Each operator is a thin form around a Python function of this package, and each can be run
from Python without the App::

    import fiftyone.operators as foo
    op = foo.get_operator("@ovsam/ovsam/label_with_prompts")
    op(dataset, "ground_truth", "ovsam", vocabulary="lvis", skip_existing=True)   # or delegate=True
    # same as foo.execute_operator(op.uri, {"view": dataset.view(), "params": {...}})

Immediate runs are bounded by FiftyOne's ``operator_timeout`` (600 s by default): label large
datasets with delegated execution (``delegate=True``, then ``fiftyone delegated launch``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ovsam_core import list_models, vocabulary_to_text

from .evaluation import evaluate
from .labeling import label_everything, label_with_prompts
from .auto import LABEL_LISTS
from .prompts import check_prompt_field, prompt_candidates
from .vocab import PROMPT_LABELS, set_vocabulary

PLUGIN = "@ovsam/ovsam"
VOCAB_HELP = (f"coco, lvis, imagenet21k, a vocabulary file or `ovsam vocab build` folder, {PROMPT_LABELS} "
              "(the prompts' own labels), or class names separated by commas (synonyms with |)")


def _target(ctx):
    return ctx.target_view() if hasattr(ctx, "target_view") else ctx.view


def _choices(values: List[str]):
    view = types.AutocompleteView()
    for v in values:
        view.add_choice(v, label=v)
    return view


def _detections_fields(ctx, kinds=("Detections",)) -> List[str]:
    if ctx.dataset is None:
        return []
    schema = ctx.dataset.get_field_schema()
    return sorted(n for n, f in schema.items() if getattr(getattr(f, "document_type", None), "__name__", None) in kinds)


def _progress(ctx):
    def report(fraction: float, message: str) -> None:
        ctx.set_progress(progress=fraction, label=message)
    return report


def _execute(uri: str, samples, params: Dict[str, Any], delegate: bool, delegation_target: Optional[str]):
    return foo.execute_operator(uri, {"view": samples.view(), "params": params},
                                request_delegation=delegate, delegation_target=delegation_target)


class LabelWithPrompts(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="label_with_prompts",
            label="OVSAM: segment and name prompted objects",
            description="Masks and class names (from a large vocabulary) for the boxes or keypoints of a field",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if hasattr(ctx, "target_view"):
            ctx.target_view()  # FiftyOne >= 1.8: adds the dataset / view / selection choice
        cands = prompt_candidates(ctx.dataset) if ctx.dataset is not None else []
        inputs.str("prompt_field", required=True, label="Prompt field", default=cands[0] if cands else None,
                   description="Detections (boxes) or Keypoints (clicks) to segment and name",
                   view=_choices(cands))
        # not `required`: FiftyOne does not fill in defaults of programmatic calls before validating
        inputs.str("label_field", default="ovsam", label="Output field",
                   description="Detections field to write (never overwritten unless you allow it)")
        inputs.str("vocabulary", label="Vocabulary", description=VOCAB_HELP + "; empty: the dataset's "
                   "vocabulary (set_vocabulary), else the model's")
        inputs.enum("model", list_models(), default="ovsam-lvis", label="Model",
                    description="see `ovsam models` (weights are downloaded on first use)")
        inputs.enum("mode", ["default", "head", "fused"], default="default", label="Recognition mode")
        inputs.int("top_k", default=5, min=1, label="Alternatives stored per object")
        inputs.bool("skip_existing", default=False, label="Skip samples already labelled (resume)")
        inputs.bool("overwrite", default=False, label="Overwrite existing labels")
        inputs.enum("device", ["auto", "cpu", "cuda", "mps"], default="auto", label="Device")
        return types.Property(inputs, view=types.View(label="OVSAM: label from prompts"))

    def execute(self, ctx):
        p = ctx.params
        mode = p.get("mode") or "default"
        summary = label_with_prompts(
            _target(ctx), p.get("prompt_field"), p.get("label_field") or "ovsam",
            model=p.get("model") or "ovsam-lvis", vocabulary=p.get("vocabulary") or None,
            mode=None if mode == "default" else mode, top_k=int(p.get("top_k") or 5),
            skip_existing=bool(p.get("skip_existing")), overwrite=bool(p.get("overwrite")),
            device=p.get("device") or "auto", progress=_progress(ctx))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return summary

    def resolve_output(self, ctx):
        outputs = types.Object()
        for name, label in (("labelled", "Samples labelled"), ("objects", "Objects"),
                            ("skipped_existing", "Skipped (already labelled)"),
                            ("skipped_no_prompts", "Skipped (no prompts)"),
                            ("invalid_prompts", "Invalid prompts"), ("failed", "Failed samples")):
            outputs.int(name, label=label)
        return types.Property(outputs)

    def __call__(self, sample_collection, prompt_field: str, label_field: str = "ovsam", *,
                 vocabulary=None, model: str = "ovsam-lvis", mode: Optional[str] = None, top_k: int = 5,
                 skip_existing: bool = False, overwrite: bool = False, device: str = "auto",
                 delegate: bool = False, delegation_target: Optional[str] = None):
        check_prompt_field(sample_collection, prompt_field)  # a clear error before anything is scheduled
        if vocabulary is not None and not isinstance(vocabulary, str):
            vocabulary = vocabulary_to_text(vocabulary)
        params = dict(prompt_field=prompt_field, label_field=label_field, vocabulary=vocabulary, model=model,
                      mode=mode or "default", top_k=top_k, skip_existing=skip_existing, overwrite=overwrite,
                      device=device)
        return _execute(self.uri, sample_collection, params, delegate, delegation_target)


class LabelEverything(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="label_everything",
            label="OVSAM: label everything / find",
            description="Masks and class names for every object, with no prompt: the classes you give (find) "
                        "or every object the vocabulary names (everything); resumes an interrupted run",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if hasattr(ctx, "target_view"):
            ctx.target_view()
        # nothing `required`: FiftyOne does not fill in defaults of programmatic calls before validating
        inputs.str("classes", label="Classes", description="class names separated by commas (synonyms with |), a preset "
                   "(coco, lvis) or a vocabulary file; empty: the labels of the classes field, else every object "
                   "the model names (everything mode)")
        inputs.str("classes_field", label="Classes from field", description="use the labels of this field as classes",
                   view=_choices(_detections_fields(ctx, tuple(LABEL_LISTS))))
        inputs.enum("mode", ["auto", "find", "everything"], default="auto", label="Mode",
                    description="auto: find when there are classes, else everything")
        inputs.int("points_per_side", default=32, min=2, label="Points per side (grid of prompts)")
        inputs.float("min_score", default=0.5, min=0.0, max=1.0, label="Minimum score")
        inputs.str("label_field", default="ovsam_auto", label="Output field",
                   description="Detections field to write; a rerun with the same settings resumes")
        inputs.enum("model", list_models(), default="ovsam-lvis", label="Model")
        inputs.enum("device", ["auto", "cpu", "cuda", "mps"], default="auto", label="Device")
        inputs.bool("overwrite", default=False, label="Relabel samples that have labels")
        return types.Property(inputs, view=types.View(label="OVSAM: label everything / find"))

    def execute(self, ctx):
        p = ctx.params
        summary = label_everything(
            _target(ctx), p.get("label_field") or "ovsam_auto", classes=p.get("classes") or None,
            classes_field=p.get("classes_field") or None, mode=p.get("mode") or "auto",
            points_per_side=int(p.get("points_per_side") or 32),
            min_score=0.5 if p.get("min_score") is None else float(p["min_score"]),
            model=p.get("model") or "ovsam-lvis", device=p.get("device") or "auto",
            overwrite=bool(p.get("overwrite")), progress=_progress(ctx))
        if not ctx.delegated:
            ctx.trigger("reload_dataset")
        return summary

    def resolve_output(self, ctx):
        outputs = types.Object()
        for name, label in (("labelled", "Samples labelled"), ("objects", "Objects"),
                            ("skipped_existing", "Skipped (labelled by an earlier run)"), ("failed", "Failed samples")):
            outputs.int(name, label=label)
        return types.Property(outputs)

    def __call__(self, sample_collection, label_field: str = "ovsam_auto", *, classes=None,
                 classes_field: Optional[str] = None, mode: str = "auto", points_per_side: int = 32,
                 min_score: float = 0.5, model: str = "ovsam-lvis", device: str = "auto", overwrite: bool = False,
                 delegate: bool = False, delegation_target: Optional[str] = None):
        if classes is not None and not isinstance(classes, str):
            classes = vocabulary_to_text(classes)
        params = dict(label_field=label_field, classes=classes, classes_field=classes_field, mode=mode,
                      points_per_side=points_per_side, min_score=min_score, model=model, device=device,
                      overwrite=overwrite)
        return _execute(self.uri, sample_collection, params, delegate, delegation_target)


class Evaluate(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="evaluate",
            label="OVSAM: evaluate masks and recognition",
            description="Mask quality (class-agnostic), recognition (classwise) and top-1 accuracy against "
                        "the prompts' ground truth",
            dynamic=True,
            allow_immediate_execution=True,
            allow_delegated_execution=True,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        if hasattr(ctx, "target_view"):
            ctx.target_view()
        fields = _detections_fields(ctx)
        inputs.str("pred_field", default="ovsam", label="ovsam field", view=_choices(fields))
        inputs.str("gt_field", label="Ground-truth field",
                   description="Detections with masks; empty: the prompt field the labels were made from",
                   view=_choices(fields))
        inputs.str("eval_key", default="ovsam", label="Evaluation key",
                   description="FiftyOne evaluations <key>_mask and <key>_cls are written")
        inputs.float("iou", default=0.5, min=0.0, max=1.0, label="IoU threshold")
        inputs.bool("compute_mAP", default=False, label="Also compute mAP")
        inputs.bool("overwrite", default=False, label="Replace existing evaluations with this key")
        return types.Property(inputs, view=types.View(label="OVSAM: evaluate"))

    def execute(self, ctx):
        p = ctx.params
        return evaluate(_target(ctx), p.get("pred_field") or "ovsam", p.get("gt_field") or None,
                        eval_key=p.get("eval_key") or "ovsam", iou=float(p.get("iou") or 0.5),
                        overwrite=bool(p.get("overwrite")), compute_mAP=bool(p.get("compute_mAP")))

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.float("mAP", label="mAP (COCO-style, masks, classwise)")
        outputs.float("accuracy", label="Top-1 accuracy vs. prompt labels")
        outputs.float("mean_class_accuracy", label="Mean per-class accuracy")
        outputs.float("miou", label="Mean mask IoU with the prompting object")
        outputs.obj("mask", label="Mask quality (class-agnostic matching)", view=types.JSONView())
        outputs.obj("recognition", label="Recognition (classwise matching)", view=types.JSONView())
        outputs.obj("per_class_accuracy", label="Per-class accuracy", view=types.JSONView())
        return types.Property(outputs)

    def __call__(self, sample_collection, pred_field: str = "ovsam", gt_field: Optional[str] = None, *,
                 eval_key: str = "ovsam", iou: float = 0.5, overwrite: bool = False, compute_mAP: bool = False,
                 delegate: bool = False, delegation_target: Optional[str] = None):
        params = dict(pred_field=pred_field, gt_field=gt_field, eval_key=eval_key, iou=iou, overwrite=overwrite,
                      compute_mAP=compute_mAP)
        return _execute(self.uri, sample_collection, params, delegate, delegation_target)


class SetVocabulary(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="set_vocabulary",
            label="OVSAM: set the dataset's vocabulary",
            description="Store the class names ovsam chooses from on this dataset (dataset info)",
            dynamic=False,
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("vocabulary", label="Vocabulary", description=VOCAB_HELP + "; empty: remove")
        inputs.str("prompt_field", label="Prompt field (for @prompt_labels)")
        return types.Property(inputs, view=types.View(label="OVSAM: set vocabulary"))

    def execute(self, ctx):
        p = ctx.params
        return set_vocabulary(ctx.dataset, p.get("vocabulary") or None, p.get("prompt_field") or None)

    def __call__(self, dataset, vocabulary, prompt_field: Optional[str] = None):
        if vocabulary is not None and not isinstance(vocabulary, str):
            vocabulary = vocabulary_to_text(vocabulary)
        return _execute(self.uri, dataset, {"vocabulary": vocabulary, "prompt_field": prompt_field}, False, None)


OPERATORS = (LabelWithPrompts, LabelEverything, Evaluate, SetVocabulary)


def register(p) -> None:
    for cls in OPERATORS:
        p.register(cls)
