"""Settings every host service shares: which model to load and how, and its pre-labelling defaults.

Frozen dataclasses a host's own settings class inherits from (``@dataclass(frozen=True) class
Settings(PredictorOptions, PrelabelDefaults): ...``), so that the fields, their meaning and the
way a :class:`~ovsam_core.Predictor` is built from them are written once; read them from the
environment with :func:`ovsam_core.env_table` + :func:`ovsam_core.dataclass_from_env`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class PredictorOptions:
    """How to load the model.

    Attributes:
        model: a registered model name (``ovsam models``).
        vocab: ``None``: the host's own labels are the vocabulary; else a preset (``lvis``,
            ``coco``, ``imagenet21k``), a vocabulary file or a ``vocab build`` folder, whose
            classes are mapped onto the host's labels.
        device / dtype: ``auto``, ``cpu``, ``cuda`` or ``mps``; image-encoder precision
            (``fp32``, ``bf16``, ``fp16``).
        weights_dir / weights: a folder holding the model's files by their official names, or
            a fused ``.safetensors`` file written by ``ovsam convert``.
        cache_bytes: size of the predictor's embedding LRU.
        download: fetch missing weight files (``False``: local files only).
    """

    model: str = "ovsam-lvis"
    vocab: Optional[str] = None
    device: str = "auto"
    dtype: str = "fp32"
    weights_dir: Optional[str] = None
    weights: Optional[str] = None
    cache_bytes: int = 2 * 1024 ** 3
    download: bool = True

    def check(self) -> None:
        """``ValueError`` now (at start, not in every worker later) for an unknown model or a
        vocabulary that is neither a preset nor an existing file / folder (a mistyped path is
        not a class name)."""
        from ..vocabulary import parse_vocabulary_text
        from ..weights.registry import get_model_spec

        get_model_spec(self.model)
        if self.vocab:
            parse_vocabulary_text(self.vocab)

    def load_predictor(self):
        """A new :class:`ovsam_core.Predictor` with these options (no progress bars)."""
        from ..predictor import Predictor

        return Predictor(self.model, weights_dir=self.weights_dir, weights=self.weights, device=self.device,
                         dtype=self.dtype, cache_bytes=self.cache_bytes, download=self.download, progress=False)


@dataclass(frozen=True)
class PrelabelDefaults:
    """Pre-labelling of images without prompts (:func:`ovsam_core.hosts.prelabel`).

    Attributes:
        auto: ``find`` (the host's labels are searched for), ``everything`` or ``off``.
        points_per_side / min_score: the prompt grid and the lowest object score kept.
    """

    auto: str = "find"
    points_per_side: int = 32
    min_score: float = 0.5

    def auto_settings(self, overrides: Optional[Mapping[str, Any]] = None):
        """:class:`ovsam_core.AutoSettings` of these defaults, overridden by ``overrides`` (e.g. a
        project's options: ``auto``, ``points_per_side``, ``min_score`` ...); ``ValueError``
        names a bad key and its valid values."""
        from .prelabel import AutoSettings

        base = {"auto": self.auto, "points_per_side": self.points_per_side, "min_score": self.min_score}
        return AutoSettings.parse({**base, **dict(overrides or {})})
