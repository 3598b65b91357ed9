"""Image embeddings as immutable values, with an in-memory LRU and an optional disk store.

An :class:`ImageEmbedding` carries the image features and a :class:`EmbeddingSignature`
(image digest, model and weights id, pre-processing, dtype, package version). Caches are keyed
by that signature, and a stored file whose signature does not match is refused.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from .lru import SizedLRU
from .modeling import ImageFeatures
from .preprocess import FrameTransform


class EmbeddingMismatchError(ValueError):
    """An embedding (or stored embedding file) belongs to another model or image."""


@dataclass(frozen=True)
class EmbeddingSignature:
    """What an embedding was computed from; equal signatures mean interchangeable embeddings."""

    image_digest: str
    model: str
    weights_id: str
    preprocessing: str
    dtype: str
    version: str

    @property
    def model_key(self) -> Tuple[str, str, str, str]:
        """The part that must match the predictor decoding it (all but the image)."""
        return (self.model, self.weights_id, self.preprocessing, self.dtype)

    @property
    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ImageEmbedding:
    """Encode once, decode many prompts. Immutable; safe to share between threads.

    Attributes:
        features: the model's image features (batch size 1).
        frame: original (H, W) <-> model-frame mapping.
        signature: see :class:`EmbeddingSignature`.
    """

    features: ImageFeatures
    frame: FrameTransform
    signature: EmbeddingSignature

    @property
    def nbytes(self) -> int:
        return self.features.nbytes()

    @property
    def image_size(self) -> Tuple[int, int]:
        """(H, W) of the original image."""
        return self.frame.orig_hw

    def to(self, device: Union[str, torch.device]) -> "ImageEmbedding":
        f = self.features
        feats = ImageFeatures(embedding=f.embedding.to(device), fpn=tuple(t.to(device) for t in f.fpn),
                              c5=f.c5.to(device), backbone=None)
        return ImageEmbedding(feats, self.frame, self.signature)

    # ---- (de)serialisation
    def to_tensors(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
        f = self.features
        tensors = {"embedding": f.embedding, "c5": f.c5, **{f"fpn{i}": t for i, t in enumerate(f.fpn)}}
        meta = {"signature": self.signature.key,
                "frame": json.dumps({"orig_hw": self.frame.orig_hw, "resized_hw": self.frame.resized_hw,
                                     "size": self.frame.size})}
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, meta

    @classmethod
    def from_tensors(cls, tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> "ImageEmbedding":
        sig = EmbeddingSignature(**json.loads(meta["signature"]))
        fr = json.loads(meta["frame"])
        n = len([k for k in tensors if k.startswith("fpn")])
        feats = ImageFeatures(embedding=tensors["embedding"], fpn=tuple(tensors[f"fpn{i}"] for i in range(n)),
                              c5=tensors["c5"])
        return cls(feats, FrameTransform(tuple(fr["orig_hw"]), tuple(fr["resized_hw"]), fr["size"]), sig)

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write a safetensors file (atomically), or a zarr group when ``path`` ends in ``.zarr``.

        Both carry the signature; :meth:`load` refuses files of other models.
        """
        from safetensors.torch import save_file

        tensors, meta = self.to_tensors()
        path = Path(path)
        if path.suffix == ".zarr":
            return _save_zarr(path, tensors, meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"format": "ovsam-embedding-v1", **meta})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike], expect: Optional[Tuple[str, str, str, str]] = None) -> "ImageEmbedding":
        """Read a file written by :meth:`save`; ``expect`` (a ``model_key``) refuses other models."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        p = Path(path)
        if p.suffix == ".zarr":
            tensors, meta = _load_zarr(p)
        else:
            try:
                with safe_open(str(p), framework="pt") as f:
                    meta = f.metadata() or {}
            except Exception as e:  # noqa: BLE001
                raise EmbeddingMismatchError(f"{p} is not an ovsam embedding file: {e}") from e
            tensors = None
        if meta.get("format") != "ovsam-embedding-v1":
            raise EmbeddingMismatchError(f"{p} is not an ovsam embedding file (write one with `ovsam embed`)")
        emb = cls.from_tensors(tensors if tensors is not None else load_file(str(p)), meta)
        if expect is not None and emb.signature.model_key != tuple(expect):
            raise EmbeddingMismatchError(
                f"{p} was computed by model {emb.signature.model!r} ({emb.signature.preprocessing}, "
                f"{emb.signature.dtype}), not by the model in use; re-run `ovsam embed` with this model")
        return emb


def _zarr():
    try:
        import zarr
    except ImportError as e:
        raise ImportError("zarr embeddings need zarr: pip install zarr (or 'ovsam[napari]')") from e
    return zarr


def _save_zarr(path: Path, tensors: Dict[str, torch.Tensor], meta: Dict[str, str]) -> Path:
    """A zarr group: one array per tensor, the signature in the group attributes."""
    import shutil

    zarr = _zarr()
    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    g = zarr.open_group(str(tmp), mode="w")
    for k, v in tensors.items():
        a = v.numpy()
        arr = (g.create_array(k, shape=a.shape, dtype=a.dtype) if hasattr(g, "create_array")
               else g.create_dataset(k, shape=a.shape, dtype=a.dtype))
        arr[...] = a
    g.attrs.update({"format": "ovsam-embedding-v1", **meta})
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def _load_zarr(path: Path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    zarr = _zarr()
    try:
        g = zarr.open_group(str(path), mode="r")
        meta = {k: str(v) for k, v in dict(g.attrs).items()}
        tensors = {k: torch.from_numpy(g[k][...]) for k in g.array_keys()}
    except Exception as e:  # noqa: BLE001
        raise EmbeddingMismatchError(f"{path} is not an ovsam embedding (zarr): {e}") from e
    return tensors, meta


class EmbeddingLRU(SizedLRU[ImageEmbedding]):
    """Thread-safe LRU of embeddings bounded by their total size in bytes (default 2 GiB)."""

    def __init__(self, max_bytes: int = 2 * 1024 ** 3) -> None:
        super().__init__(max_bytes, lambda emb: emb.nbytes)


class EmbeddingStore:
    """Embeddings on disk, one safetensors file per signature, refusing mismatched files."""

    def __init__(self, directory: Union[str, os.PathLike]) -> None:
        self.directory = Path(directory)

    def path_for(self, sig: EmbeddingSignature) -> Path:
        import hashlib

        return self.directory / f"{hashlib.sha256(sig.key.encode()).hexdigest()[:32]}.safetensors"

    def get(self, sig: EmbeddingSignature) -> Optional[ImageEmbedding]:
        p = self.path_for(sig)
        if not p.is_file():
            return None
        emb = ImageEmbedding.load(p)
        if emb.signature != sig:
            raise EmbeddingMismatchError(f"{p} holds an embedding with another signature; delete it")
        return emb

    def put(self, emb: ImageEmbedding) -> Path:
        return emb.save(self.path_for(emb.signature))
