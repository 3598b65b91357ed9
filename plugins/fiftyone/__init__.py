"""ovsam for FiftyOne: a prompted open-vocabulary labelling model and the ``@ovsam/ovsam`` plugin.

This file is both the ``ovsam_plugins.fiftyone`` package and the entry point of the FiftyOne
plugin (``fiftyone.yml`` beside it). FiftyOne imports it under a name of its own, so it only
uses absolute imports, and it never imports ``fiftyone`` at import time (``ovsam``'s command
line loads it without FiftyOne installed).

Python API (needs ``pip install "ovsam[fiftyone]"``)::

    from ovsam_plugins.fiftyone import OVSAMModel, label_with_prompts, label_everything, evaluate, set_vocabulary
    dataset.apply_model(OVSAMModel(model="ovsam-lvis"), label_field="ovsam", prompt_field="ground_truth")
    dataset.apply_model(OVSAMModel(model="ovsam-lvis", classes=["cat", "dog"]), label_field="found")  # no prompts
    label_everything(dataset, "ovsam_auto", classes_field="ground_truth")   # resumable, like the operator
    label_with_prompts(dataset, "ground_truth", "ovsam", vocabulary="lvis", skip_existing=True)
    evaluate(dataset, "ovsam")
"""
from __future__ import annotations

import importlib

PLUGIN_NAME = "@ovsam/ovsam"

_EXPORTS = {
    "OVSAMModel": "model",
    "OVSAMModelConfig": "model",
    "get_predictor": "model",
    "PromptFieldError": "prompts",
    "label_with_prompts": "labeling",
    "label_everything": "labeling",
    "LabelFieldExistsError": "labeling",
    "evaluate": "evaluation",
    "set_vocabulary": "vocab",
    "get_vocabulary": "vocab",
    "parse_vocabulary": "vocab",
    "install_plugin": "install",
    "install_zoo_source": "install",
}

__all__ = ["PLUGIN_NAME", "register", *_EXPORTS]


def register(p) -> None:
    """FiftyOne's plugin hook: registers the ``@ovsam/ovsam`` operators."""
    try:
        ops = importlib.import_module("ovsam_plugins.fiftyone.operators")
    except ImportError as e:  # the plugin folder was copied but ovsam is not installed
        raise ImportError(f"the {PLUGIN_NAME} plugin needs the ovsam package in FiftyOne's Python "
                          f"environment: pip install \"ovsam[fiftyone]\" ({e})") from e
    ops.register(p)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ovsam_plugins.fiftyone' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ovsam_plugins.fiftyone.{mod}"), name)
