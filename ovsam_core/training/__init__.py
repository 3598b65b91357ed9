"""Training: SAM2CLIP distillation and CLIP2SAM training (``ovsam train ...``).

Modules: :mod:`.config` (YAML configs, upstream defaults), :mod:`.data` (COCO-format datasets,
LSJ, prompt sampling, SA-1B-style image folders, deterministic global batches),
:mod:`.losses`, :mod:`.distill`, :mod:`.clip2sam`, :mod:`.loop` (checkpoints, resume, metrics,
DDP), :mod:`.export` (upstream file layouts). See ``docs/training.md``.

Needs the ``train`` extra (OpenCV): ``pip install "ovsam[train]"``.
"""
from .config import Clip2SamConfig, ConfigError, DistillConfig, load_config

__all__ = ["Clip2SamConfig", "DistillConfig", "ConfigError", "load_config",
           "train_clip2sam", "train_distill"]


def train_clip2sam(cfg):
    """Run CLIP2SAM training with a :class:`Clip2SamConfig` (see :mod:`.clip2sam`)."""
    from .clip2sam import train_clip2sam as _run

    return _run(cfg)


def train_distill(cfg):
    """Run SAM2CLIP distillation with a :class:`DistillConfig` (see :mod:`.distill`)."""
    from .distill import train_distill as _run

    return _run(cfg)
