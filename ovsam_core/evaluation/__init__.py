"""Evaluation (``ovsam eval``): the paper's Table-1 metrics (per-prompt mask IoU and
recognition accuracy with GT-box and centre-point prompts, base / novel) and Table-2 style
COCO mask AP with detector boxes as prompts, for any registered model and the two SAM + CLIP
baselines (Image-Crop, Feature-Crop). Results as JSON and markdown.

Python::

    from ovsam_core.evaluation import run_eval
    res = run_eval("data/val/images", "data/val/instances.json", model="ovsam-lvis-eval",
                   baselines=("image-crop", "feature-crop"), sam="vit_h",
                   sam_checkpoint="sam_vit_h_4b8939.pth", out_dir="eval_out")
"""
from .metrics import InstanceResult, coco_mask_ap, mask_iou, summarize_table1
from .methods import Method, OVSAMMethod
from .api import build_methods, run_eval
from .runner import evaluate

__all__ = ["InstanceResult", "coco_mask_ap", "mask_iou", "summarize_table1", "Method", "OVSAMMethod",
           "build_methods", "run_eval", "evaluate"]
