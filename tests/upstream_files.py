"""Write a seeded tiny model in the exact upstream file layouts (test helper).

The inverse of the registry's key rules: what the official files of a model would hold for
the ``test`` architecture. Used to test the loader, the key mapping and ``ovsam convert``
without the 2.3 GB real-size files.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict

import torch

from ovsam_core.config import OVSAM_TEST
from ovsam_core.weights.loader import _seeded
from ovsam_core.weights.registry import (CLASSIFIER_LVIS_SPACE, CLIP_OPENAI, CLIP_OPENCLIP, FPN_SPACE,
                                         HEAD_SPACE, NECK_SPACE, SAM_VIT_H, ModelSpec)

VISUAL_BACK = {"stem.0": "conv1", "stem.1": "bn1", "stem.3": "conv2", "stem.4": "bn2",
               "stem.6": "conv3", "stem.7": "bn3", "head": "attnpool"}


def _upstream_clip(image_sd: Dict[str, torch.Tensor], text_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    out = {}
    for k, v in image_sd.items():
        if k.startswith("backbone."):
            rest = k[len("backbone."):]
            for new, old in VISUAL_BACK.items():
                if rest.startswith(new + "."):
                    rest = old + rest[len(new):]
                    break
            out["visual." + rest] = v
    out.update(text_sd)
    out["logit_scale"] = torch.tensor(4.6052)
    return out


def write_upstream_files(d: Path, seed: int = 1, torchscript_clip: bool = False) -> Dict[str, torch.Tensor]:
    """Write the ovsam-lvis file set for the test architecture into ``d``.

    Returns the reference state (``image.*``/``text.*`` keys and ``classifier``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, text = _seeded(OVSAM_TEST, seed)
    isd, tsd = model.state_dict(), text.state_dict()
    sub = lambda p: {k[len(p):]: v for k, v in isd.items() if k.startswith(p)}  # noqa: E731
    clip = _upstream_clip(isd, tsd)
    if torchscript_clip:
        save_torchscript(clip, d / CLIP_OPENAI.filename)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in clip.items()}, str(d / CLIP_OPENCLIP.filename))
    sam = {f"prompt_encoder.{k}": v for k, v in sub("pe.").items()}
    sam["image_encoder.patch_embed.proj.weight"] = torch.zeros(2, 3, 1, 1)
    sam["mask_decoder.iou_token.weight"] = torch.zeros(1, 4)
    torch.save(sam, d / SAM_VIT_H.filename)
    torch.save({"state_dict": {f"neck_student.{k}": v for k, v in sub("neck.").items()}}, d / NECK_SPACE.filename)
    head = {f"mask_decoder.{k}": v for k, v in sub("mask_decoder.").items()}
    roi_new = torch.randn_like(head["mask_decoder.roi_conv.0.conv.weight"])
    torch.save({"state_dict": head}, d / HEAD_SPACE.filename)
    fpn = {f"fpn_neck.{k}": v for k, v in sub("fpn_neck.").items()}
    fpn["roi_conv.0.conv.weight"] = roi_new  # the demo overrides the head's roi_conv (Q5)
    torch.save({"state_dict": fpn}, d / FPN_SPACE.filename)
    cls = torch.nn.functional.normalize(torch.randn(5, 2, OVSAM_TEST.clip_embed_dim), dim=-1)
    torch.save(cls, d / CLASSIFIER_LVIS_SPACE.filename)
    ref = {f"image.{k}": v for k, v in isd.items()}
    ref["image.mask_decoder.roi_conv.0.conv.weight"] = roi_new
    ref.update({f"text.{k}": v for k, v in tsd.items()})
    ref["classifier"] = cls
    return ref


def save_torchscript(state: Dict[str, torch.Tensor], path: Path) -> None:
    """A TorchScript archive whose module has ``state`` as parameters/buffers (like OpenAI's)."""
    root = torch.nn.Module()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        mod = root
        for p in parents:
            if not hasattr(mod, p):
                mod.add_module(p, torch.nn.Module())
            mod = getattr(mod, p)
        mod.register_buffer(leaf, value.half() if value.is_floating_point() and value.dim() > 1 else value)
    torch.jit.save(torch.jit.script(_Holder(root)), str(path))


class _Holder(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        for name, child in inner.named_children():
            self.add_module(name, child)
        for name, buf in inner.named_buffers(recurse=False):
            self.register_buffer(name, buf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def make_test_spec(name: str = "ovsam-test-upstream") -> ModelSpec:
    """ovsam-lvis's file set (no hashes: these are not the official files) on the test arch."""
    files = tuple(replace(f, sha256=None, size=None, url=None, repo_id=None)
                  for f in (CLIP_OPENAI, SAM_VIT_H, NECK_SPACE, HEAD_SPACE, FPN_SPACE, CLASSIFIER_LVIS_SPACE))
    return ModelSpec(name=name, arch="test", description="test arch in upstream layouts", files=files)
