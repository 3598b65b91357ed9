"""Save trained weights in the upstream file layouts, so they load like official releases.

For a registered model with files, each file whose key rules cover a trained module is
written under its **official name** with the upstream keys (the registry's
:class:`~ovsam_core.weights.registry.KeyRule` mapping, inverted): e.g. for ``ovsam-coco-eval``
CLIP2SAM training writes ``clip2sam_coco_rn50x16.pth`` (``fpn_neck.*``, ``mask_decoder.*``) and
SAM2CLIP distillation writes ``sam2clip_vith_rn50x16.pth`` (``neck_student.*``). Put that
folder in ``weights_dir`` (``--weights-dir``): the loader takes your files from there (with a
warning that they differ from the official release) and the other files from the cache.

A model without files (``ovsam-test``) is written as one fused ``<name>.safetensors`` (the
format of ``ovsam convert``), which ``load_model(name, weights_dir=dir)`` picks up.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import torch

from .. import __version__
from ..modeling import OVSAM
from ..text.encoder import TextEncoder
from ..weights.loader import CLASSIFIER_KEY, FUSED_FORMAT, TEXT_PREFIX
from ..weights.registry import KeyRule, WeightFile, get_model_spec


def invert_rules(wf: WeightFile, image_sd: Dict[str, torch.Tensor],
                 text_sd: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """The upstream keys of file ``wf`` from model state dicts (inverse of its key rules)."""
    out: Dict[str, torch.Tensor] = {}
    for rule in wf.rules:
        if rule.target == "classifier":
            continue
        src = image_sd if rule.target == "image" else (text_sd or {})
        for k, v in src.items():
            if not k.startswith(rule.dst):
                continue
            rest = k[len(rule.dst):]
            for old, new in rule.rename:
                if rest == new or rest.startswith(new + "."):
                    rest = old + rest[len(new):]
                    break
            key = rule.src + rest
            # the forward mapping takes the first rule whose src matches: keep that one's view
            first = next((r for r in wf.rules if r.target != "classifier" and key.startswith(r.src)), None)
            if first is rule:
                out[key] = v.detach().cpu().contiguous()
    return out


def _covers(wf: WeightFile, prefixes: Iterable[str]) -> bool:
    dsts = [r.dst for r in wf.rules if r.target == "image"]
    return any(p.startswith(d) or d.startswith(p) for d in dsts for p in prefixes if d)


def _atomic_save(obj, path: Path, safetensors_meta: Optional[Dict[str, str]] = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(obj, tmp, metadata=safetensors_meta)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def export_fused(model: OVSAM, name: str, out_dir: Path, text_encoder: Optional[TextEncoder] = None,
                 classifier: Optional[torch.Tensor] = None) -> Path:
    """One ``<name>.safetensors`` in the ``ovsam convert`` format."""
    spec = get_model_spec(name)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if text_encoder is not None:
        tensors.update({TEXT_PREFIX + k: v.detach().cpu().contiguous() for k, v in text_encoder.state_dict().items()})
    if classifier is not None:
        tensors[CLASSIFIER_KEY] = classifier.detach().cpu().float().contiguous()
    meta = {"format": FUSED_FORMAT, "model": name, "arch": spec.arch, "ovsam_version": __version__,
            "sources": "ovsam train", "licenses": json.dumps(spec.licenses),
            "text_encoder": str(text_encoder is not None)}
    out = Path(out_dir) / f"{name}.safetensors"
    _atomic_save(tensors, out, meta)
    return out


def export_weights(model: OVSAM, name: str, out_dir, *, trained: Sequence[str] = (),
                   roles: Optional[Sequence[str]] = None, text_encoder: Optional[TextEncoder] = None,
                   classifier: Optional[torch.Tensor] = None) -> List[Path]:
    """Write the files of registered model ``name`` that hold the ``trained`` modules.

    Args:
        trained: top-level module names that were trained (``fpn_neck``, ``mask_decoder``,
            ``neck``, ...): every file whose rules cover one of them is written.
        roles: write exactly these file roles instead.
        text_encoder / classifier: needed for the CLIP / classifier roles, and included in a
            fused file.
    Returns:
        the written paths.
    """
    spec = get_model_spec(name)
    out_dir = Path(out_dir)
    if not spec.files:
        return [export_fused(model, name, out_dir, text_encoder, classifier)]
    image_sd = model.state_dict()
    text_sd = text_encoder.state_dict() if text_encoder is not None else None
    prefixes = [t + "." for t in trained]
    written = []
    for wf in spec.files:
        if roles is not None:
            if wf.role not in roles:
                continue
        elif not _covers(wf, prefixes):
            continue
        if any(r.target == "classifier" for r in wf.rules):
            if classifier is None:
                raise ValueError(f"role {wf.role!r} ({wf.filename}) needs the classifier")
            obj = classifier.detach().cpu().float().contiguous()
        else:
            obj = invert_rules(wf, image_sd, text_sd)
            if any(r.target == "text" for r in wf.rules) and text_sd is None:
                raise ValueError(f"role {wf.role!r} ({wf.filename}) also holds the text encoder: pass text_encoder")
            if wf.filename.endswith((".pth", ".pt")) and wf.role != "clip":
                obj = {"state_dict": obj, "meta": {"ovsam_version": __version__, "written_by": "ovsam train"}}
        path = out_dir / wf.filename
        _atomic_save(obj, path)
        written.append(path)
    if not written:
        raise ValueError(f"no file of model {name!r} holds {list(trained)}; pass roles=...")
    return written
