"""Architecture hyper-parameters of OVSAM, as frozen dataclasses.

An :class:`ArchConfig` fully determines the module tree (and therefore the state-dict keys
and shapes). Weights are a separate concern (:mod:`ovsam_core.weights`).
"""
from __future__ import annotations

from dataclasses import dataclass, asdict
from typing import Dict, Tuple


@dataclass(frozen=True)
class ArchConfig:
    """Shapes of every OVSAM block.

    Defaults are the upstream model: CLIP RN50x16 visual trunk, a 5-block SAM2CLIP neck of
    width 1280, SAM ViT-H's prompt encoder (256-d) and the CLIP2SAM FPN + head. Input images
    are padded to ``image_size`` x ``image_size`` (the *model frame*).
    """

    image_size: int = 1024
    # CLIP ModifiedResNet trunk
    clip_layers: Tuple[int, int, int, int] = (6, 8, 18, 8)
    clip_width: int = 96
    clip_embed_dim: int = 768          # CLIP joint embedding size (attention pool / text output)
    clip_pool_size: int = 12           # attention-pool grid (CLIP image_size // 32)
    # SAM2CLIP neck
    neck_dim: int = 1280
    neck_depth: int = 5
    neck_heads: int = 16
    neck_window_size: int = 14
    neck_global_blocks: Tuple[int, ...] = (4,)
    # SAM prompt encoder / CLIP2SAM decoder
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    roi_size: int = 7                  # RoIAlign output of the head: 7 (demo, LVIS) or 12 (COCO)
    finest_scale: float = 56.0         # mmdet SingleRoIExtractor level rule
    # CLIP text tower
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408

    @property
    def clip_heads(self) -> int:
        """Attention-pool heads, derived as in OpenAI's loader (width * 32 / 64)."""
        return self.clip_width * 32 // 64

    @property
    def backbone_channels(self) -> Tuple[int, int, int, int]:
        """Channels of C2..C5."""
        w = self.clip_width * 4
        return (w, 2 * w, 4 * w, 8 * w)

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (stride 16)."""
        return self.image_size // 16

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


#: The upstream architecture (real-size, ~309 M image parameters + 124 M text parameters).
OVSAM_RN50X16 = ArchConfig()
#: The same for the COCO evaluation config (RoIAlign 12x12 in the head).
OVSAM_RN50X16_ROI12 = ArchConfig(roi_size=12)
#: A tiny architecture with the same code paths, for fast tests (random init).
OVSAM_TEST = ArchConfig(
    image_size=256,
    clip_layers=(1, 1, 1, 1),
    clip_width=8,
    clip_embed_dim=32,
    neck_dim=32,
    neck_depth=2,
    neck_heads=2,
    neck_window_size=7,
    neck_global_blocks=(1,),
    prompt_dim=32,
    decoder_heads=2,
    decoder_mlp_dim=64,
    roi_size=7,
    text_width=32,
    text_layers=2,
    text_heads=2,
    vocab_size=49408,
)

#: The demo architecture of ``ovsam-shapes`` (trained by ``configs/demo_shapes.yaml`` on the
#: synthetic shapes of :mod:`ovsam_core.synthetic`): 256-px frame like ``test``, but twice as wide
#: (64-d prompts/decoder, 4 heads) and a deeper CLIP stage 3; ~2.2 M image + 1.6 M text parameters.
OVSAM_SHAPES = ArchConfig(
    image_size=256,
    clip_layers=(1, 1, 2, 1),
    clip_width=16,
    clip_embed_dim=64,
    neck_dim=64,
    neck_depth=2,
    neck_heads=4,
    neck_window_size=8,
    neck_global_blocks=(1,),
    prompt_dim=64,
    decoder_heads=4,
    decoder_mlp_dim=256,
    roi_size=7,
    text_width=32,
    text_layers=2,
    text_heads=2,
    vocab_size=49408,
)

ARCHS: Dict[str, ArchConfig] = {
    "rn50x16": OVSAM_RN50X16,
    "rn50x16-roi12": OVSAM_RN50X16_ROI12,
    "test": OVSAM_TEST,
    "shapes": OVSAM_SHAPES,
}
