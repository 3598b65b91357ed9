"""The ``@ovsam/ovsam`` operators: ``label_with_prompts``, ``label_everything``, ``evaluate``, ``set_vocabulary``.

Each is a form around a Python function of this package and runs from Python without the App::

    op = foo.get_operator("@ovsam/ovsam/label_with_prompts")
    op(dataset, "ground_truth", "ovsam", vocabulary="lvis", skip_existing=True)   # or delegate=True

No input is ``required``: FiftyOne does not fill in defaults of programmatic calls before
validating, so each operator applies its own defaults. Immediate runs are bounded by FiftyOne's
``operator_timeout`` (600 s): label large datasets delegated (``fiftyone delegated launch``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import fiftyone.operators as foo
import fiftyone.operators.types as types

from ovsam_core import list_models, vocabulary_to_text

from .auto import LABEL_LISTS
from .evaluation import evaluate
from .labeling import label_everything, label_with_prompts
from .prompts import check_prompt_field, prompt_candidates
from .store import fields_of_kind
from .vocab import PROMPT_LABELS, set_vocabulary

PLUGIN = "@ovsam/ovsam"
VOCAB_HELP = (f"coco, lvis, imagenet21k, a vocabulary file or `ovsam vocab build` folder, {PROMPT_LABELS} "
              "(the prompts' own labels), or class names separated by commas (synonyms with |)")
DEVICES = ["auto", "cpu", "cuda", "mps"]


def _choices(values: List[str]):
    view = types.AutocompleteView()
    for v in values:
        view.add_choice(v, label=v)
    return view


def _fields(ctx, kinds=("Detections",)) -> List[str]:
    return fields_of_kind(ctx.dataset, kinds) if ctx.dataset is not None else []


def _or(p: Dict[str, Any], key: str, default):
    return default if p.get(key) in (None, "") else p[key]


class _Operator(foo.Operator):
    """A form (:meth:`form`) around a function (:meth:`run`); ``op(collection, *POSITIONAL, **params)``."""

    NAME = LABEL = DESCRIPTION = ""
    POSITIONAL: Tuple[str, ...] = ()
    OUTPUTS: Tuple[Tuple[str, str, str], ...] = ()   # (type, name, label)
    DELEGATED = RELOAD = True

    @property
    def config(self):
        return foo.OperatorConfig(name=self.NAME, label=self.LABEL, description=self.DESCRIPTION, dynamic=True,
                                  allow_immediate_execution=True, allow_delegated_execution=self.DELEGATED)

    def resolve_input(self, ctx):
        inputs = types.Object()
        if hasattr(ctx, "target_view"):
            ctx.target_view()  # FiftyOne >= 1.8: adds the dataset / view / selection choice
        self.form(ctx, inputs)
        return types.Property(inputs, view=types.View(label=self.LABEL))

    def resolve_output(self, ctx):
        outputs = types.Object()
        for kind, name, label in self.OUTPUTS:
            getattr(outputs, kind)(name, label=label, **({"view": types.JSONView()} if kind == "obj" else {}))
        return types.Property(outputs)

    def execute(self, ctx):
        target = ctx.target_view() if hasattr(ctx, "target_view") else ctx.view
        report = (lambda fraction, message: ctx.set_progress(progress=fraction, label=message))
        result = self.run(target, dict(ctx.params or {}), report)
        if self.RELOAD and not ctx.delegated:
            ctx.trigger("reload_dataset")
        return result

    def __call__(self, sample_collection, *args, delegate: bool = False, delegation_target=None, **params):
        params.update(zip(self.POSITIONAL, args))
        for k in ("vocabulary", "classes"):
            if params.get(k) is not None and not isinstance(params[k], str):
                params[k] = vocabulary_to_text(params[k])
        self.check(sample_collection, params)  # a clear error before anything is scheduled
        return foo.execute_operator(self.uri, {"view": sample_collection.view(), "params": params},
                                    request_delegation=delegate, delegation_target=delegation_target)

    def check(self, samples, params: Dict[str, Any]) -> None:
        pass

    def form(self, ctx, inputs) -> None:
        raise NotImplementedError

    def run(self, samples, p: Dict[str, Any], progress):
        raise NotImplementedError


def _model_inputs(inputs) -> None:
    inputs.enum("model", list_models(), default="ovsam-lvis", label="Model",
                description="see `ovsam models` (weights are downloaded on first use)")
    inputs.enum("device", DEVICES, default="auto", label="Device")


class LabelWithPrompts(_Operator):
    NAME, LABEL = "label_with_prompts", "OVSAM: segment and name prompted objects"
    DESCRIPTION = "Masks and class names (from a large vocabulary) for the boxes or keypoints of a field"
    POSITIONAL = ("prompt_field", "label_field")
    OUTPUTS = tuple(("int", n, lab) for n, lab in (
        ("labelled", "Samples labelled"), ("objects", "Objects"), ("skipped_existing", "Skipped (already labelled)"),
        ("skipped_no_prompts", "Skipped (no prompts)"), ("invalid_prompts", "Invalid prompts"),
        ("failed", "Failed samples")))

    def form(self, ctx, inputs):
        cands = prompt_candidates(ctx.dataset) if ctx.dataset is not None else []
        inputs.str("prompt_field", required=True, label="Prompt field", default=cands[0] if cands else None,
                   description="Detections (boxes) or Keypoints (clicks) to segment and name", view=_choices(cands))
        inputs.str("label_field", default="ovsam", label="Output field",
                   description="Detections field to write (never overwritten unless you allow it)")
        inputs.str("vocabulary", label="Vocabulary",
                   description=VOCAB_HELP + "; empty: the dataset's vocabulary (set_vocabulary), else the model's")
        _model_inputs(inputs)
        inputs.enum("mode", ["default", "head", "fused"], default="default", label="Recognition mode")
        inputs.int("top_k", default=5, min=1, label="Alternatives stored per object")
        inputs.bool("skip_existing", default=False, label="Skip samples already labelled (resume)")
        inputs.bool("overwrite", default=False, label="Overwrite existing labels")

    def check(self, samples, params):
        check_prompt_field(samples, params.get("prompt_field"))

    def run(self, samples, p, progress):
        mode = _or(p, "mode", "default")
        return label_with_prompts(
            samples, p.get("prompt_field"), _or(p, "label_field", "ovsam"), model=_or(p, "model", "ovsam-lvis"),
            vocabulary=p.get("vocabulary") or None, mode=None if mode == "default" else mode,
            top_k=int(_or(p, "top_k", 5)), skip_existing=bool(p.get("skip_existing")),
            overwrite=bool(p.get("overwrite")), device=_or(p, "device", "auto"), progress=progress)


class LabelEverything(_Operator):
    NAME, LABEL = "label_everything", "OVSAM: label everything / find"
    DESCRIPTION = ("Masks and class names for every object, with no prompt: the classes you give (find) or every "
                   "object the vocabulary names (everything); resumes an interrupted run")
    POSITIONAL = ("label_field",)
    OUTPUTS = tuple(("int", n, lab) for n, lab in (
        ("labelled", "Samples labelled"), ("objects", "Objects"),
        ("skipped_existing", "Skipped (labelled by an earlier run)"), ("failed", "Failed samples")))

    def form(self, ctx, inputs):
        inputs.str("classes", label="Classes", description="class names separated by commas (synonyms with |), a "
                   "preset (coco, lvis) or a vocabulary file; empty: the labels of the classes field, else every "
                   "object the model names (everything mode)")
        inputs.str("classes_field", label="Classes from field", description="use the labels of this field as classes",
                   view=_choices(_fields(ctx, tuple(LABEL_LISTS))))
        inputs.enum("mode", ["auto", "find", "everything"], default="auto", label="Mode",
                    description="auto: find when there are classes, else everything")
        inputs.int("points_per_side", default=32, min=2, label="Points per side (grid of prompts)")
        inputs.float("min_score", default=0.5, min=0.0, max=1.0, label="Minimum score")
        inputs.str("label_field", default="ovsam_auto", label="Output field",
                   description="Detections field to write; a rerun with the same settings resumes")
        _model_inputs(inputs)
        inputs.bool("overwrite", default=False, label="Relabel samples that have labels")

    def run(self, samples, p, progress):
        return label_everything(
            samples, _or(p, "label_field", "ovsam_auto"), classes=p.get("classes") or None,
            classes_field=p.get("classes_field") or None, mode=_or(p, "mode", "auto"),
            points_per_side=int(_or(p, "points_per_side", 32)), min_score=float(_or(p, "min_score", 0.5)),
            model=_or(p, "model", "ovsam-lvis"), device=_or(p, "device", "auto"), overwrite=bool(p.get("overwrite")),
            progress=progress)


class Evaluate(_Operator):
    NAME, LABEL = "evaluate", "OVSAM: evaluate masks and recognition"
    DESCRIPTION = ("Mask quality (class-agnostic), recognition (classwise), mAP and top-1 accuracy against "
                   "ground truth")
    POSITIONAL = ("pred_field", "gt_field")
    OUTPUTS = (("float", "mAP", "mAP (COCO-style, masks, classwise)"),
               ("float", "accuracy", "Top-1 accuracy vs. prompt labels"),
               ("float", "mean_class_accuracy", "Mean per-class accuracy"),
               ("float", "miou", "Mean mask IoU with the prompting object"),
               ("obj", "mask", "Mask quality (class-agnostic matching)"),
               ("obj", "recognition", "Recognition (classwise matching)"),
               ("obj", "per_class_accuracy", "Per-class accuracy"))
    RELOAD = False

    def form(self, ctx, inputs):
        fields = _fields(ctx)
        inputs.str("pred_field", default="ovsam", label="ovsam field", view=_choices(fields))
        inputs.str("gt_field", label="Ground-truth field", view=_choices(fields),
                   description="Detections with masks; empty: the prompt (or classes) field the labels came from")
        inputs.str("eval_key", default="ovsam", label="Evaluation key",
                   description="FiftyOne evaluations <key>_mask and <key>_cls are written")
        inputs.float("iou", default=0.5, min=0.0, max=1.0, label="IoU threshold")
        inputs.bool("compute_mAP", default=False, label="Also compute mAP")
        inputs.bool("overwrite", default=False, label="Replace existing evaluations with this key")

    def run(self, samples, p, progress):
        return evaluate(samples, _or(p, "pred_field", "ovsam"), p.get("gt_field") or None,
                        eval_key=_or(p, "eval_key", "ovsam"), iou=float(_or(p, "iou", 0.5)),
                        overwrite=bool(p.get("overwrite")), compute_mAP=bool(p.get("compute_mAP")))


class SetVocabulary(_Operator):
    NAME, LABEL = "set_vocabulary", "OVSAM: set the dataset's vocabulary"
    DESCRIPTION = "Store the class names ovsam chooses from on this dataset (dataset info)"
    POSITIONAL = ("vocabulary", "prompt_field")
    DELEGATED = RELOAD = False

    def form(self, ctx, inputs):
        inputs.str("vocabulary", label="Vocabulary", description=VOCAB_HELP + "; empty: remove")
        inputs.str("prompt_field", label="Prompt field (for @prompt_labels)")

    def run(self, samples, p, progress):
        return set_vocabulary(samples, p.get("vocabulary") or None, p.get("prompt_field") or None)


OPERATORS = (LabelWithPrompts, LabelEverything, Evaluate, SetVocabulary)


def register(p) -> None:
    for cls in OPERATORS:
        p.register(cls)
