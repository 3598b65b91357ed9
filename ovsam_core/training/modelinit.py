"""Build the OVSAM model for training: frozen parts from registered files, upstream init of
the trainable parts, freezing.

The frozen parts come from a registered model's files, **only the roles asked for** (e.g. the
CLIP backbone, the SAM prompt encoder and the SAM2CLIP neck for CLIP2SAM training; the CLIP
backbone alone for distillation), resolved like ``load_model`` does (``weights_dir``, cache,
download). ``ovsam-test`` (no files) is a seeded random init.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..config import ARCHS
from ..modeling import OVSAM
from ..text.encoder import TextEncoder
from ..weights.checkpoint import CheckpointError, MappedWeights, check_keys, map_file, read_checkpoint
from ..weights.loader import _seeded, load_model
from ..weights.registry import ModelSpec, get_model_spec
from .config import ModelInitConfig

log = logging.getLogger(__name__)

#: model-state prefixes each file role provides
ROLE_PREFIXES: Dict[str, Tuple[str, ...]] = {
    "clip": ("backbone.",), "prompt_encoder": ("pe.",), "neck": ("neck.",),
}


def _load_roles(model: OVSAM, text: TextEncoder, spec: ModelSpec, roles: Sequence[str],
                weights_dir: Optional[str], download: bool, progress: bool) -> None:
    from ..weights.hub import candidate_for, resolve_model_files

    files = tuple(f for f in spec.files if f.role in roles)
    missing_roles = set(roles) - {f.role for f in files}
    if missing_roles:
        raise ValueError(f"model {spec.name!r} has no file for {sorted(missing_roles)}")
    sub = dataclasses.replace(spec, files=files)
    paths = resolve_model_files(sub, weights_dir, download=download, progress=progress)
    mapped = MappedWeights()
    for wf in files:
        map_file(candidate_for(wf, paths[wf.role]), paths[wf.role], mapped)
    prefixes = tuple(p for r in roles for p in ROLE_PREFIXES.get(r, ()))
    expected = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    got = {k: v for k, v in mapped.tensors["image"].items() if k.startswith(prefixes)}
    check_keys(expected, got, f"the {', '.join(roles)} of model {spec.name!r}")
    model.load_state_dict(got, strict=False)
    if "clip" in roles and mapped.tensors["text"]:
        check_keys(text.state_dict(), mapped.tensors["text"], f"the text encoder of {spec.name!r}")
        text.load_state_dict(mapped.tensors["text"], strict=True)


def load_neck_checkpoint(model: OVSAM, path: str) -> None:
    """A SAM2CLIP file in the upstream layout (``neck_student.*``, or ``neck.*``)."""
    sd = read_checkpoint(path)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} is not a state dict")
    out = {}
    for k, v in sd.items():
        for p in ("neck_student.", "neck."):
            if k.startswith(p):
                out[k[len(p):]] = v.float()
                break
    check_keys(model.neck.state_dict(), out, f"the SAM2CLIP neck ({path})")
    model.neck.load_state_dict(out, strict=True)


def load_sam_decoder(model: OVSAM, path: str, with_prompt_encoder: bool = True) -> None:
    """Initialise the CLIP2SAM decoder from a SAM checkpoint, as upstream: SAM's
    ``mask_decoder`` with the first mask token and hypernetwork MLP, IoU token/head dropped;
    optionally the prompt encoder too."""
    sd = read_checkpoint(path)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path} is not a SAM state dict")
    dec = {}
    for k, v in sd.items():
        if not k.startswith("mask_decoder."):
            continue
        rest = k[len("mask_decoder."):]
        if rest.startswith(("iou_token.", "iou_prediction_head.")):
            continue
        if rest.startswith("output_hypernetworks_mlps.") and not rest.startswith("output_hypernetworks_mlps.0."):
            continue
        if rest == "mask_tokens.weight":
            v = v[:1]
        dec[rest] = v.float()
    target = model.mask_decoder.mask_decoder
    check_keys(target.state_dict(), dec, f"SAM's mask decoder ({path})")
    target.load_state_dict(dec, strict=True)
    if with_prompt_encoder:
        pe = {k[len("prompt_encoder."):]: v.float() for k, v in sd.items() if k.startswith("prompt_encoder.")}
        check_keys(model.pe.state_dict(), pe, f"SAM's prompt encoder ({path})")
        model.pe.load_state_dict(pe, strict=True)


def reinit_clip2sam(model: OVSAM) -> None:
    """Upstream init of the new CLIP2SAM parts: FPN convs Xavier-uniform (bias 0), roi_conv
    Kaiming-normal fan_out, label_token N(0, 1). The decoder keeps its (SAM) weights."""
    for m in model.fpn_neck.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.mask_decoder.roi_conv.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    nn.init.normal_(model.mask_decoder.label_token.weight, 0.0, 1.0)


def reinit_neck(model: OVSAM, pos_embed: Optional[torch.Tensor] = None) -> None:
    """Upstream init of the SAM2CLIP neck: level encoding N(0, 1), ``pos_embed`` copied from
    the teacher when given (and shaped alike); other layers keep PyTorch's defaults."""
    nn.init.normal_(model.neck.level_encoding.weight, 0.0, 1.0)
    if pos_embed is not None:
        if tuple(pos_embed.shape) == tuple(model.neck.pos_embed.shape):
            model.neck.pos_embed.copy_(pos_embed.detach())
        else:
            log.info("teacher pos_embed %s does not fit the neck's %s; kept the neck's",
                     tuple(pos_embed.shape), tuple(model.neck.pos_embed.shape))


@torch.no_grad()
def calibrate_batchnorm(backbone: nn.Module, images: Sequence[torch.Tensor]) -> int:
    """Set every BatchNorm's running mean/var to the statistics of ``images`` (cumulative
    average over one pass, one image at a time). Returns the number of BN layers updated."""
    bns = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or not images:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = backbone.training
    backbone.eval()
    for m in bns:
        m.train()
    # in train mode each BN normalises with the image's own statistics, so later layers see
    # normalised inputs while the running averages accumulate
    for x in images:
        backbone(x[None] if x.ndim == 3 else x)
    for m, (mom, tr) in zip(bns, saved):
        m.momentum = mom
        m.train(tr)
    backbone.train(was)
    return len(bns)


def neck_pos_embed_from_prompt_encoder(model: OVSAM) -> None:
    """Copy the prompt encoder's dense positional encoding (1, D, g, g) into the neck's
    ``pos_embed`` (1, g, g, neck_dim) when neck_dim == D."""
    pe = model.pe.get_dense_pe().permute(0, 2, 3, 1)
    if tuple(pe.shape) != tuple(model.neck.pos_embed.shape):
        raise ValueError(f"the prompt encoder's encoding {tuple(pe.shape)} does not fit the neck's pos_embed "
                         f"{tuple(model.neck.pos_embed.shape)} (needs neck_dim == prompt_dim)")
    with torch.no_grad():
        model.neck.pos_embed.copy_(pe)


def build_model(cfg: ModelInitConfig, roles: Sequence[str], progress: bool = True
                ) -> Tuple[OVSAM, TextEncoder, ModelSpec]:
    """The model (random where no file is read) with the frozen parts loaded from ``roles``."""
    spec = get_model_spec(cfg.init_model)
    arch = cfg.arch or spec.arch
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    if cfg.random_init:
        model, text = _seeded(ARCHS[arch])
    elif not spec.files or (cfg.weights_dir and (Path(cfg.weights_dir) / f"{spec.name}.safetensors").is_file()):
        if arch != spec.arch:
            raise ValueError(f"model {spec.name!r} is architecture {spec.arch!r}, not {arch!r}")
        loaded = load_model(spec.name, cfg.weights_dir, download=cfg.download, progress=progress)
        model, text = loaded.model, loaded.text_encoder
    else:
        model, text = _seeded(ARCHS[arch])
        if roles:
            _load_roles(model, text, spec, roles, cfg.weights_dir, cfg.download, progress)
    if cfg.neck_checkpoint:
        load_neck_checkpoint(model, cfg.neck_checkpoint)
    return model, text, spec


def resolve_modules(model: nn.Module, names: Iterable[str]) -> List[Tuple[str, nn.Module]]:
    mods = dict(model.named_modules())
    out = []
    for n in names:
        if n not in mods:
            top = sorted(k for k in mods if k and "." not in k)
            raise ValueError(f"unknown module {n!r} in model.trainable; top-level modules: {', '.join(top)}")
        out.append((n, mods[n]))
    return out


#: parameters no training forward uses (CLIP's attention pool serves only the frozen-CLIP
#: branch at inference; SAM's mask-prompt path and negative-point embedding are never fed):
#: they stay frozen even inside a trainable module (DDP requires every trained parameter to
#: receive a gradient).
UNUSED_IN_TRAINING = ("backbone.head.", "pe.mask_downscaling.", "pe.point_embeddings.0.")


def freeze(model: nn.Module, trainable: Sequence[str], unused: Sequence[str] = UNUSED_IN_TRAINING) -> List[str]:
    """Only the listed modules train (requires_grad), minus ``unused`` prefixes; returns the
    trainable parameter names."""
    model.requires_grad_(False)
    for _, m in resolve_modules(model, trainable):
        m.requires_grad_(True)
    for n, p in model.named_parameters():
        if n.startswith(tuple(unused)):
            p.requires_grad_(False)
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: nn.Module, trainable: Sequence[str]) -> Dict[str, torch.Tensor]:
    """A copy of the state-dict entries under the trainable module prefixes (what a checkpoint keeps)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if any(k.startswith(t + ".") for t in trainable)}


def load_trainable_state(model: nn.Module, trainable: Sequence[str], sd: Dict[str, torch.Tensor]) -> None:
    """Load :func:`trainable_state` output back; every trainable key must be present."""
    missing = [k for k in model.state_dict() if any(k.startswith(t + ".") for t in trainable) and k not in sd]
    if missing:
        raise ValueError(f"checkpoint lacks trainable keys, e.g. {missing[:3]} (was model.trainable changed?)")
    model.load_state_dict(sd, strict=False)


def set_train_mode(model: nn.Module, trainable: Sequence[str]) -> None:
    """Frozen modules in eval mode (BN running stats, as upstream ``fix=True``), trainable in
    train mode, except BatchNorm layers, which always use their running statistics (mmdet's
    ``norm_eval``: a trained CLIP backbone keeps its BN statistics; no cross-process BN sync)."""
    model.eval()
    for _, m in resolve_modules(model, trainable):
        m.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def count_parameters(model: nn.Module) -> Dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": train}
