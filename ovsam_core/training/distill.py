"""SAM2CLIP distillation (``ovsam train distill CONFIG``), spec §5.1.

Teacher: a SAM image encoder from ``segment-anything`` (``vit_h`` upstream; ``vit_l`` /
``vit_b`` for cheaper runs) producing (B, 256, 64, 64) for a 1024 input; or, for tests and
demos, ``tiny``: a seeded, randomly initialised small ``ImageEncoderViT`` (the same SAM class)
whose output has the student's shape (B, prompt_dim, S/16, S/16).

Student: the frozen CLIP backbone + the trainable SAM2CLIP neck; loss = per-pixel MSE between
the two maps (padding included), weight 1.

Teacher features are computed on the fly, or precomputed once into ``teacher.cache_dir``:
one file per image named by the image's sha256, and a ``signature.json`` (teacher variant,
checkpoint hash, image size, pre-processing, dtype) that must match for the cache to be used.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from ..modeling import OVSAM
from .config import DistillConfig
from .data import ImageFolderDataset, collate, list_images
from .distributed import DistInfo, barrier
from .losses import LossParts
from .modelinit import (build_model, calibrate_batchnorm, freeze, load_trainable_state,
                        neck_pos_embed_from_prompt_encoder, reinit_neck, set_train_mode, trainable_state)

log = logging.getLogger(__name__)
PREPROCESSING = "cv2-bilinear-round-longside+sam-norm+zero-pad"


# --------------------------------------------------------------------------- teacher
def build_teacher(cfg, image_size: int, out_chans: int, tiny_dim: int = 64) -> nn.Module:
    """The SAM image encoder (frozen, eval mode). ``tiny_dim``: the tiny teacher's width when
    ``cfg.tiny_dim`` is unset (the student neck's width)."""
    if cfg.variant == "tiny":
        dim = cfg.tiny_dim or tiny_dim
        from segment_anything.modeling.image_encoder import ImageEncoderViT

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            enc = ImageEncoderViT(
                img_size=image_size, patch_size=16, in_chans=3, embed_dim=dim, depth=cfg.tiny_depth,
                num_heads=cfg.tiny_heads, mlp_ratio=4.0, out_chans=out_chans, qkv_bias=True,
                norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU,
                use_abs_pos=True, use_rel_pos=True, rel_pos_zero_init=True, window_size=7,
                global_attn_indexes=(cfg.tiny_depth - 1,))
            # a random-init ViT has a zero pos_embed; give the tiny teacher a non-trivial one
            nn.init.normal_(enc.pos_embed, 0.0, 0.5)
    else:
        if not cfg.checkpoint:
            raise ValueError(f"teacher.checkpoint is required for SAM {cfg.variant} (e.g. sam_vit_h_4b8939.pth "
                             "from https://dl.fbaipublicfiles.com/segment_anything/)")
        from segment_anything import sam_model_registry

        sam = sam_model_registry[cfg.variant](checkpoint=None)
        from ..weights.checkpoint import read_checkpoint

        sd = read_checkpoint(cfg.checkpoint)
        enc_sd = {k[len("image_encoder."):]: v for k, v in sd.items() if k.startswith("image_encoder.")}
        sam.image_encoder.load_state_dict(enc_sd, strict=True)
        enc = sam.image_encoder
        if enc.img_size != image_size:
            raise ValueError(f"SAM {cfg.variant} takes {enc.img_size}px inputs but data.image_size is {image_size}")
    return enc.eval().requires_grad_(False)


def teacher_signature(cfg, image_size: int, out_chans: int, tiny_dim: int = 64) -> Dict[str, Any]:
    sig: Dict[str, Any] = {"variant": cfg.variant, "image_size": image_size, "preprocessing": PREPROCESSING,
                           "dtype": cfg.cache_dtype, "out_chans": out_chans}
    if cfg.variant == "tiny":
        sig.update(seed=cfg.seed, dim=cfg.tiny_dim or tiny_dim, depth=cfg.tiny_depth, heads=cfg.tiny_heads)
    else:
        from ..weights.hub import sha256_file

        sig["checkpoint_sha256"] = sha256_file(cfg.checkpoint)
    return sig


class TeacherCache:
    """Teacher features on disk: ``<dir>/<image sha256>.pt`` + ``<dir>/signature.json``."""

    def __init__(self, directory: os.PathLike, signature: Dict[str, Any]) -> None:
        self.dir = Path(directory)
        self.signature = signature
        dtypes = {"float16": torch.float16, "float32": torch.float32, "bfloat16": torch.bfloat16}
        if signature["dtype"] not in dtypes:
            raise ValueError(f"teacher.cache_dtype must be one of {sorted(dtypes)}, got {signature['dtype']!r}")
        self.dtype = dtypes[signature["dtype"]]

    def open(self, create: bool) -> "TeacherCache":
        sig_path = self.dir / "signature.json"
        if sig_path.is_file():
            found = json.loads(sig_path.read_text())
            if found != self.signature:
                diff = {k: (found.get(k), v) for k, v in self.signature.items() if found.get(k) != v}
                raise ValueError(f"teacher cache {self.dir} was made with other settings {diff} "
                                 "(found, wanted); use another teacher.cache_dir or delete this one")
        elif create:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".signature.{os.getpid()}.tmp"
            tmp.write_text(json.dumps(self.signature, indent=1, sort_keys=True))
            os.replace(tmp, sig_path)
        return self

    def path(self, digest: str) -> Path:
        return self.dir / f"{digest}.pt"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, digest: str, feat: torch.Tensor) -> None:
        fd, tmp = tempfile.mkstemp(prefix=digest, suffix=".part", dir=self.dir)
        os.close(fd)
        try:
            torch.save(feat.detach().to("cpu", self.dtype).contiguous().clone(), tmp)
            os.replace(tmp, self.path(digest))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(self, digest: str) -> torch.Tensor:
        t = torch.load(str(self.path(digest)), map_location="cpu", weights_only=True)
        return t.float()


@torch.no_grad()
def precompute_teacher(teacher: nn.Module, dataset: ImageFolderDataset, cache: TeacherCache, device: torch.device,
                       info: DistInfo, batch_size: int = 4, progress: bool = True) -> int:
    """Compute the missing teacher features (rank r takes every world-size-th image)."""
    from tqdm.auto import tqdm

    idx = list(range(info.rank, len(dataset), info.world_size))
    digests = {i: None for i in idx}
    todo = []
    for i in idx:
        from .data import file_digest

        d = file_digest(dataset.paths[i])
        digests[i] = d
        if not cache.has(d):
            todo.append(i)
    teacher.to(device)
    done = 0
    for s in tqdm(range(0, len(todo), batch_size), desc="teacher features", disable=not progress, unit="batch"):
        chunk = todo[s:s + batch_size]
        x = torch.stack([dataset.load(i) for i in chunk]).to(device)
        feats = teacher(x)
        for i, f in zip(chunk, feats):
            cache.put(digests[i], f)
        done += len(chunk)
    barrier(info)
    return done


class CachedTeacherDataset(torch.utils.data.Dataset):
    """Wraps :class:`ImageFolderDataset` and adds the cached teacher map as ``target``."""

    def __init__(self, base: ImageFolderDataset, cache: TeacherCache) -> None:
        self.base = base
        self.cache = cache

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        item = self.base[key]
        if not self.cache.has(item["digest"]):
            raise FileNotFoundError(f"no teacher features for {item['path']} in {self.cache.dir}")
        item["target"] = self.cache.get(item["digest"])
        return item


def distill_collate(items: List[Dict[str, Any]]) -> Dict[str, Any]:
    out = collate(items)
    if "target" in items[0]:
        out["target"] = torch.stack(out["target"])
    return out


# --------------------------------------------------------------------------- student
class DistillModule(nn.Module):
    """Frozen CLIP backbone + trainable neck; ``forward(batch)`` -> MSE sum / count."""

    def __init__(self, model: OVSAM, teacher: Optional[nn.Module], trainable) -> None:
        super().__init__()
        self.model = model
        self.teacher = teacher
        self.trainable = tuple(trainable)

    def train(self, mode: bool = True) -> "DistillModule":
        super().train(mode)
        if mode:
            set_train_mode(self.model, self.trainable)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def student(self, x: torch.Tensor) -> torch.Tensor:
        frozen_backbone = "backbone" not in self.trainable
        with torch.set_grad_enabled(not frozen_backbone and torch.is_grad_enabled()):
            feats = self.model.backbone(x)
        return self.model.neck(feats)

    def forward(self, batch: Dict[str, Any]):
        dev = next(self.model.parameters()).device
        x = batch["image"].to(dev, non_blocking=True)
        if "target" in batch:
            target = batch["target"].to(dev, non_blocking=True)
        else:
            with torch.no_grad():
                target = self.teacher(x)
        pred = self.student(x)
        err = (pred.float() - target.float()) ** 2
        parts = LossParts(sums={"mse": err.sum()},
                          counts={"mse": torch.tensor(float(err.numel()), device=dev)})
        return parts, {}


class DistillTask:
    name = "distill"

    def __init__(self, cfg: DistillConfig, device: torch.device, progress: bool = True,
                 info: Optional[DistInfo] = None) -> None:
        info = info or DistInfo(device=device)
        self.cfg = cfg
        model, text, spec = build_model(cfg.model, ("clip",), progress=progress)
        self.spec = spec
        self.text_encoder = text
        size = cfg.data.image_size
        if size != model.cfg.image_size:
            raise ValueError(f"data.image_size {size} differs from the architecture's {model.cfg.image_size}")
        teacher = build_teacher(cfg.teacher, size, model.cfg.prompt_dim, model.cfg.neck_dim)
        with torch.no_grad():
            probe = teacher(torch.zeros(1, 3, size, size))
        want = (model.cfg.prompt_dim, model.cfg.embedding_size, model.cfg.embedding_size)
        if tuple(probe.shape[1:]) != want:
            raise ValueError(f"teacher output {tuple(probe.shape[1:])} does not match the neck's {want}")
        if cfg.model.reinit:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.run.seed)
                pos = getattr(teacher, "pos_embed", None) if cfg.teacher.copy_pos_embed else None
                reinit_neck(model, pos)
        paths = list_images(cfg.data.images, cfg.data.list_file)
        if cfg.data.max_images:
            paths = paths[:cfg.data.max_images]
        base = ImageFolderDataset(paths, size)
        if cfg.model.neck_pos_embed == "prompt_encoder":
            neck_pos_embed_from_prompt_encoder(model)
        if cfg.model.calibrate_bn:
            calibrate_batchnorm(model.backbone, [base.load(i) for i in range(min(cfg.model.calibrate_bn, len(base)))])
        self.trainable_names = freeze(model, cfg.model.trainable)
        if cfg.teacher.cache_dir:
            sig = teacher_signature(cfg.teacher, size, model.cfg.prompt_dim, model.cfg.neck_dim)
            cache = TeacherCache(cfg.teacher.cache_dir, sig)
            if info.is_main:
                cache.open(create=True)
            barrier(info)
            cache.open(create=False)
            n = precompute_teacher(teacher, base, cache, device, info, progress=progress)
            log.info("computed %d teacher feature maps into %s", n, cache.dir)
            self.dataset = CachedTeacherDataset(base, cache)
            teacher_mod = None
        else:
            self.dataset = base
            teacher_mod = teacher
        self.module = DistillModule(model, teacher_mod, cfg.model.trainable).to(device)
        self.collate = distill_collate
        self.loss_weights = {"mse": 1.0}

    @property
    def model(self) -> OVSAM:
        return self.module.model

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        return trainable_state(self.model, self.cfg.model.trainable)

    def load_trainable_state(self, sd: Dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, self.cfg.model.trainable, sd)

    @torch.no_grad()
    def teacher_mse(self, n_images: int = 8) -> float:
        """MSE of the current student against the teacher on the first images (evaluation)."""
        mod = self.module
        was = mod.training
        mod.eval()
        tot, cnt = 0.0, 0
        for i in range(min(n_images, len(self.dataset))):
            b = self.collate([self.dataset[i]])
            parts, _ = mod(b)
            tot += float(parts.sums["mse"])
            cnt += int(parts.counts["mse"])
        mod.train(was)
        return tot / max(cnt, 1)

    def export(self, out_dir: Path) -> List[Path]:
        from .export import export_weights

        name = self.cfg.export.model or self.spec.name
        return export_weights(self.model, name, out_dir, trained=self.cfg.model.trainable,
                              text_encoder=self.text_encoder)


def train_distill(cfg: DistillConfig) -> Dict[str, Any]:
    """Run SAM2CLIP distillation (one process, or one rank under torchrun)."""
    from .loop import run_training

    return run_training(cfg, DistillTask)
