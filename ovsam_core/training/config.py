"""Training configurations: small YAML files over dataclass defaults = the upstream recipe.

Every field has the upstream value as its default (spec §5 of ``docs/upstream-ovsam.md``), so
a YAML file only lists what differs (paths, usually). Unknown keys are errors that list the
valid ones. ``overrides`` (``--set a.b=value`` on the command line) use YAML syntax for values.

* :class:`DistillConfig` (``ovsam train distill``): SAM2CLIP, upstream
  ``sam2clip_vith_rn50x16.py`` + ``schedule_distillation.py``.
* :class:`Clip2SamConfig` (``ovsam train clip2sam``): CLIP2SAM, upstream
  ``clip2sam_{coco,lvis}_rn50x16.py`` + ``schedule_12e.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says what to fix."""


# --------------------------------------------------------------------------- shared sections
@dataclass
class OptimConfig:
    """AdamW as upstream (mmengine ``OptimWrapper``)."""

    lr: float = 1e-4
    weight_decay: float = 0.05
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    #: weight decay multiplier of nn.LayerNorm / BatchNorm / GroupNorm parameters (mmengine's
    #: ``norm_decay_mult``; SAM's custom LayerNorm2d is *not* a norm layer for it, as upstream).
    norm_decay_mult: float = 0.0
    #: learning-rate multiplier of ``backbone.*`` parameters (only matters if the backbone trains).
    backbone_lr_mult: float = 0.1
    #: gradient clipping, L2 max-norm over all trainable parameters (None = off).
    clip_grad: Optional[float] = 0.01
    #: scale lr by global_batch / base_batch_size (mmengine ``auto_scale_lr``; off by default
    #: as in upstream configs, whose runs used 8 GPUs x 2 = 16 images).
    auto_scale_lr: bool = False
    base_batch_size: int = 16


@dataclass
class ScheduleConfig:
    """Linear warmup by iteration, then ``multistep`` (by epoch) or ``cosine`` (by iteration).

    The two phases multiply (as mmengine's chained schedulers do): during warmup the factor
    rises linearly from ``warmup_factor`` to 1 over ``warmup_iters`` iterations.
    """

    epochs: int = 12
    #: stop after this many iterations instead (milestones stay in epochs).
    max_iters: Optional[int] = None
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    policy: str = "multistep"
    milestones: Tuple[int, ...] = (8, 11)
    gamma: float = 0.1
    #: cosine floor as a fraction of the base lr (mmengine ``eta_min_ratio``).
    eta_min_ratio: float = 0.01


@dataclass
class RunConfig:
    """How to run: devices, batch, logging, checkpoints, seeds."""

    work_dir: str = "work_dirs/run"
    seed: int = 0
    #: images per process (per GPU); the global batch is this times the world size.
    batch_size: int = 2
    num_workers: int = 2
    device: str = "auto"
    #: mixed precision: ``auto`` (fp16 with a grad scaler on CUDA, off on CPU), ``fp16``,
    #: ``bf16`` or ``off``.
    amp: str = "auto"
    #: ``auto`` = nccl with CUDA, gloo otherwise (only used under torchrun).
    dist_backend: str = "auto"
    log_interval: int = 10
    checkpoint_interval: int = 2000
    keep_checkpoints: int = 3
    #: ``auto`` resumes from ``work_dir/checkpoints/latest.pt`` when present; or a path; or null.
    resume: Optional[str] = "auto"
    progress: bool = True
    #: torch.use_deterministic_algorithms (slower on GPU).
    deterministic: bool = False
    #: torch threads per process on CPU (None = torch's default).
    threads: Optional[int] = None


@dataclass
class ExportConfig:
    """Where and in which upstream layout the trained weights are written at the end.

    ``model`` is a registered model (``ovsam models``) whose file layouts are written: e.g.
    ``ovsam-coco-eval`` -> ``clip2sam_coco_rn50x16.pth`` / ``sam2clip_vith_rn50x16.pth``,
    ``ovsam-lvis`` -> ``ovsam_R50x16_lvisnorare.pth`` + ``R50x16_fpn_lvis_norare_v3det.pth``.
    A model without files (``ovsam-test``) gets one fused ``<model>.safetensors``. Load the
    result with ``load_model(model, weights_dir=dir)`` / ``--weights-dir dir``.
    """

    model: Optional[str] = None
    dir: Optional[str] = None       # default: <work_dir>/export
    enabled: bool = True


@dataclass
class ModelInitConfig:
    """The model to train and where its frozen parts come from.

    ``init_model`` is a registered model whose files provide the CLIP backbone, the prompt
    encoder and the SAM2CLIP neck (its other files are not read). ``ovsam-test`` gives a
    seeded random init of the tiny architecture without any file.
    """

    arch: Optional[str] = None          # default: the init model's architecture
    init_model: str = "ovsam-coco-eval"
    #: start from a seeded random init of the architecture and read no file at all (for
    #: models trained from scratch, e.g. ``ovsam-shapes``, whose shipped weights would
    #: otherwise be the starting point).
    random_init: bool = False
    weights_dir: Optional[str] = None
    download: bool = True
    #: a SAM checkpoint (e.g. sam_vit_h_4b8939.pth) whose ``mask_decoder.*`` initialises the
    #: CLIP2SAM decoder (upstream); null = PyTorch default init.
    sam_checkpoint: Optional[str] = None
    #: your distilled neck (upstream layout, ``neck_student.*``) overriding the init model's.
    neck_checkpoint: Optional[str] = None
    #: modules that train; the rest is frozen (eval mode, no grad). Upstream CLIP2SAM:
    #: fpn_neck + mask_decoder; upstream SAM2CLIP: neck.
    trainable: Tuple[str, ...] = ("fpn_neck", "mask_decoder")
    #: re-initialise the trainable CLIP2SAM parts as upstream (FPN Xavier-uniform, roi_conv
    #: Kaiming-normal fan_out, label_token N(0, 1)) before training.
    reinit: bool = True
    #: random-init backbones only (ovsam-test): set the CLIP backbone's BatchNorm statistics
    #: from this many training images (no augmentation) before training, a stand-in for
    #: pre-trained statistics (a random ResNet with identity BN statistics shrinks its features
    #: ~10x per stage). 0 = off (upstream: CLIP's own statistics).
    calibrate_bn: int = 0
    #: random-init models only: ``prompt_encoder`` copies the prompt encoder's dense positional
    #: encoding into the neck's ``pos_embed`` buffer, a stand-in for SAM ViT-H's position
    #: embedding that upstream's distilled neck carries. null = keep.
    neck_pos_embed: Optional[str] = None


# --------------------------------------------------------------------------- CLIP2SAM
@dataclass
class SynthDataConfig:
    """Train on generated synthetic shapes (:mod:`ovsam_core.synthetic`) instead of files.

    With ``num_images > 0`` the training split is written (once; deterministic in these
    settings) into ``dir`` (default ``<run.work_dir>/synthetic``) and ``data.images`` /
    ``data.annotations`` point there, so one command trains from nothing.
    """

    num_images: int = 0
    seed: int = 0
    dir: Optional[str] = None
    min_objects: int = 1
    max_objects: int = 4
    min_radius: float = 0.12
    max_radius: float = 0.24
    #: the novel classes never appear in the training images (open-vocabulary protocol)
    train_base_only: bool = True


@dataclass
class Clip2SamData:
    """COCO-format instances; open-vocabulary split; LSJ augmentation; prompt sampling."""

    images: str = "data/coco/train2017"
    annotations: str = "data/coco/annotations/instances_train2017.json"
    #: class names: ``null`` = the dataset's category names; ``coco`` / ``lvis`` = the shipped
    #: presets (upstream synonym strings), matched to the categories sorted by id.
    vocabulary: Optional[str] = "coco"
    #: keep only instances of ``base`` classes (upstream COCO 48/17, LVIS without rare) or
    #: ``all``. Base/novel comes from ``novel_classes``, else the vocabulary preset, else a
    #: ``split`` field of the categories, else LVIS ``frequency == 'r'``.
    train_classes: str = "base"
    novel_classes: Tuple[str, ...] = ()
    image_size: int = 1024
    #: large-scale jitter: flip, resize by a random ratio, crop to image_size, filter tiny masks.
    lsj: bool = True
    flip_prob: float = 0.5
    scale_range: Tuple[float, float] = (0.9, 2.0)   # (0.1, 2.0) for LVIS upstream
    min_mask_area: int = 32
    #: prompts per image (GT instances tiled then truncated); the first ceil-ish half (n//2+1)
    #: are GT boxes, the rest single random mask points.
    num_prompts: int = 40
    #: extra single-point prompts per image on background pixels (``background_margin`` px away
    #: from every object), trained to an empty mask and the background class: an objectness
    #: signal for prompt-free "segment everything" (not in upstream's recipe: 0 = off).
    background_prompts: int = 0
    #: fraction of the ``num_prompts`` that are GT boxes (the rest single points); null =
    #: upstream's ``num_prompts // 2 + 1``.
    box_fraction: Optional[float] = None
    background_margin: int = 4
    max_images: Optional[int] = None
    synthetic: SynthDataConfig = field(default_factory=SynthDataConfig)


@dataclass
class Clip2SamLoss:
    cls_weight: float = 2.0
    bg_weight: float = 0.1
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    #: RoIAlign output during training (upstream 12 for both training configs).
    roi_size: int = 12


@dataclass
class Clip2SamConfig:
    model: ModelInitConfig = field(default_factory=ModelInitConfig)
    data: Clip2SamData = field(default_factory=Clip2SamData)
    loss: Clip2SamLoss = field(default_factory=Clip2SamLoss)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    export: ExportConfig = field(default_factory=lambda: ExportConfig(model="ovsam-coco-eval"))


# --------------------------------------------------------------------------- SAM2CLIP
@dataclass
class TeacherConfig:
    """The SAM image encoder whose (B, 256, 64, 64) output the neck learns to reproduce.

    ``variant``: ``vit_h`` (upstream), ``vit_l`` or ``vit_b`` from ``segment-anything``
    (``checkpoint`` = the official file), or ``tiny``: a randomly initialised small SAM
    ``ImageEncoderViT`` (seeded) with the student's output shape, for tests and demos.
    """

    variant: str = "vit_h"
    checkpoint: Optional[str] = None
    #: precompute teacher features once into this folder (signed; reused across runs), or
    #: compute them on the fly (null).
    cache_dir: Optional[str] = None
    cache_dtype: str = "float32"      # upstream dumps fp32; float16 halves the disk
    #: copy the teacher's ``pos_embed`` into the neck's buffer when the shapes match (upstream).
    copy_pos_embed: bool = True
    seed: int = 0                       # tiny teacher only
    tiny_dim: Optional[int] = None      # default: the neck width (so pos_embed can be copied)
    tiny_depth: int = 2
    tiny_heads: int = 2


@dataclass
class DistillData:
    """Any folder of images (searched recursively; SA-1B's ``sa_*.jpg`` layout works)."""

    images: str = "data/sam"
    #: optional text file listing sub-folders or image paths (relative to ``images``), like
    #: upstream's ``train.txt``.
    list_file: Optional[str] = None
    image_size: int = 1024
    max_images: Optional[int] = None


@dataclass
class DistillConfig:
    model: ModelInitConfig = field(default_factory=lambda: ModelInitConfig(
        init_model="ovsam-coco-eval", trainable=("neck",), reinit=False))
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    data: DistillData = field(default_factory=DistillData)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(clip_grad=5.0))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(
        epochs=24, policy="cosine", milestones=()))
    run: RunConfig = field(default_factory=RunConfig)
    export: ExportConfig = field(default_factory=lambda: ExportConfig(model="ovsam-coco-eval"))


# --------------------------------------------------------------------------- loading
def _field_types(cls: type) -> Dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _number(value: Any, kind: str, where: str) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string: accept it for numeric fields."""
    if isinstance(value, str):
        try:
            return int(value) if kind == "int" else float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    return value


def _coerce(value: Any, default: Any, where: str, annotation: str = "") -> Any:
    if value is not None and not isinstance(default, (tuple, bool)):
        if isinstance(default, float) or (default is None and "float" in annotation):
            value = _number(value, "float", where)
        elif isinstance(default, int) or (default is None and "int" in annotation):
            value = _number(value, "int", where)
    if isinstance(default, tuple):
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (int, float)) and isinstance(value, str):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def from_dict(cls: Type[T], data: Optional[Dict[str, Any]], where: str = "") -> T:
    """Build dataclass ``cls`` from nested dicts, starting from its defaults."""
    obj = cls()
    return update(obj, data or {}, where)


def update(obj: T, data: Dict[str, Any], where: str = "") -> T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    fields = _field_types(type(obj))
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key {path!r}; valid keys here: {', '.join(sorted(fields))}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            setattr(obj, key, update(cur, value or {}, path))
        else:
            setattr(obj, key, _coerce(value, cur, path, str(fields[key].type)))
    return obj


def to_dict(obj: Any) -> Dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return conv(obj)


def parse_override(text: str) -> Dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"bad override {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: Dict[str, Any] = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def _merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(cls: Type[T], path: Optional[Union[str, Path]] = None,
                overrides: Sequence[str] = (), data: Optional[Dict[str, Any]] = None) -> T:
    """Defaults <- YAML file (``_base_: other.yaml`` inherits) <- ``data`` <- overrides."""
    merged: Dict[str, Any] = {}
    if path is not None:
        merged = _read_yaml(Path(path))
    if data:
        merged = _merge(merged, data)
    for o in overrides:
        merged = _merge(merged, parse_override(o))
    cfg = from_dict(cls, merged)
    validate(cfg)
    return cfg


def _read_yaml(path: Path, depth: int = 0) -> Dict[str, Any]:
    if depth > 8:
        raise ConfigError(f"{path}: _base_ chain too deep")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = doc.pop("_base_", None)
    if base:
        parent = _read_yaml((path.parent / base).resolve(), depth + 1)
        doc = _merge(parent, doc)
    return doc


def validate(cfg: Any) -> None:
    """Checks that catch common mistakes early, with a fix in the message."""
    sched = getattr(cfg, "schedule", None)
    if sched is not None:
        if sched.policy not in ("multistep", "cosine"):
            raise ConfigError(f"schedule.policy must be multistep or cosine, got {sched.policy!r}")
        if sched.epochs < 1 and not sched.max_iters:
            raise ConfigError("schedule.epochs must be >= 1 (or set schedule.max_iters)")
    run = getattr(cfg, "run", None)
    if run is not None:
        if run.batch_size < 1:
            raise ConfigError("run.batch_size must be >= 1")
        if run.amp not in ("auto", "off", "fp16", "bf16"):
            raise ConfigError(f"run.amp must be auto, off, fp16 or bf16, got {run.amp!r}")
    data = getattr(cfg, "data", None)
    if isinstance(data, Clip2SamData):
        if data.train_classes not in ("base", "all"):
            raise ConfigError(f"data.train_classes must be base or all, got {data.train_classes!r}")
        if data.num_prompts < 1:
            raise ConfigError("data.num_prompts must be >= 1")
    model = getattr(cfg, "model", None)
    if model is not None and model.neck_pos_embed not in (None, "prompt_encoder"):
        raise ConfigError(f"model.neck_pos_embed must be null or prompt_encoder, got {model.neck_pos_embed!r}")
    teacher = getattr(cfg, "teacher", None)
    if teacher is not None and teacher.variant not in ("vit_h", "vit_l", "vit_b", "tiny"):
        raise ConfigError(f"teacher.variant must be vit_h, vit_l, vit_b or tiny, got {teacher.variant!r}")


def dump_config(cfg: Any, path: Union[str, Path]) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
