"""Write one fused safetensors file holding exactly a model's tensors (``ovsam convert``)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

from .. import __version__
from .checkpoint import check_keys
from .loader import CLASSIFIER_KEY, FUSED_FORMAT, TEXT_PREFIX, _seeded, load_weights
from .registry import get_model_spec

PathLike = Union[str, Path]


def convert_model(
    name: str,
    out: PathLike,
    weights_dir: Optional[PathLike] = None,
    *,
    include_text: bool = True,
    download: bool = True,
    progress: bool = True,
) -> Path:
    """Assemble model ``name`` from its upstream files and save a single safetensors file.

    The file holds the image model's keys (upstream names), the CLIP text encoder under
    ``text_encoder.`` (unless ``include_text=False``) and the packaged classifier as
    ``classifier`` when the model ships one. It loads with
    ``load_model(name, weights=out)`` or from ``weights_dir/<name>.safetensors``.
    Returns the written path; the write is atomic.
    """
    from safetensors.torch import save_file

    spec = get_model_spec(name)
    if not spec.files:
        raise ValueError(f"model {name!r} has no weight files to convert")
    mapped, ident = load_weights(spec, weights_dir, None, download, progress)
    model, text = _seeded(spec.arch_config)
    check_keys(model.state_dict(), mapped.tensors["image"], f"model {name!r}", extra_unexpected=mapped.unexpected)
    tensors = dict(mapped.tensors["image"])
    if include_text:
        check_keys(text.state_dict(), mapped.tensors["text"], f"the text encoder of {name!r}")
        tensors.update({TEXT_PREFIX + k: v for k, v in mapped.tensors["text"].items()})
    if mapped.classifier is not None:
        tensors[CLASSIFIER_KEY] = mapped.classifier
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {
        "format": FUSED_FORMAT, "model": name, "arch": spec.arch, "ovsam_version": __version__,
        "sources": ident, "licenses": json.dumps(spec.licenses), "text_encoder": str(include_text),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name, suffix=".part", dir=out.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
