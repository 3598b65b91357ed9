"""OVSAM modules; one file per block of the architecture."""
from .ovsam import OVSAM, ImageFeatures, FPN_STRIDES
from .ovsam_head import HeadOutput, classify, LOGIT_SCALE
from .fusion import fuse_logits
from .roi import mask_to_box, assign_levels, multilevel_roi_align

__all__ = ["OVSAM", "ImageFeatures", "FPN_STRIDES", "HeadOutput", "classify", "LOGIT_SCALE",
           "fuse_logits", "mask_to_box", "assign_levels", "multilevel_roi_align"]
