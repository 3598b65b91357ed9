"""Open-vocabulary classifier: class names -> (C, P, D) L2-normalised text prototypes.

Follows the upstream recipe (spec §4): split each class name into synonyms, embed every
synonym with the 14 ViLD prompt templates, L2-normalise each template embedding, average over
templates, L2-normalise again, and pad every class to P = max synonyms by repeating its first
synonym. At inference a region's score for a class is the max over its P prototypes.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .encoder import TextEncoder

#: The 14 ViLD templates used upstream (punctuation exact; several have no final period).
VILD_TEMPLATES: Tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)


def split_label(name: str) -> List[str]:
    """Split a class name into its synonyms, as upstream does.

    ``'_or_'`` and ``'/'`` separate synonyms like ``','``; ``'_'`` becomes a space; the result
    is lower-cased and stripped. Parentheses are kept, e.g.
    ``'tape_(sticky_cloth_or_paper)'`` -> ``['tape (sticky cloth', 'paper)']``.
    Empty pieces (``'a,,b'``) are dropped; the shipped vocabularies have none.
    """
    text = name.replace("_or_", ",").replace("/", ",").replace("_", " ").lower()
    return [s.strip() for s in text.split(",") if s.strip()]


def class_prompts(name: str, templates: Sequence[str] = VILD_TEMPLATES) -> List[List[str]]:
    """The prompts of one class: ``[[template.format(synonym) for template] for synonym]``."""
    return [[t.format(s) for t in templates] for s in split_label(name)]


def _check_inputs(class_names: Sequence[str], templates: Sequence[str]) -> List[List[str]]:
    if isinstance(class_names, str):
        raise ValueError("class_names must be a list of names, not one string; "
                         "wrap it: build_classifier(encoder, [name]).")
    if len(templates) == 0 or any("{}" not in t for t in templates):
        raise ValueError("every template must contain '{}' (the slot for the synonym), e.g. "
                         "'a photo of a {}.'; pass templates=VILD_TEMPLATES for upstream's set.")
    if len(class_names) == 0:
        raise ValueError("class_names is empty; give at least one class name.")
    synonyms = []
    for i, name in enumerate(class_names):
        syn = split_label(str(name))
        if not syn:
            raise ValueError(f"class {i} ({name!r}) has no synonym after split_label; "
                             "give every class a non-empty name.")
        synonyms.append(syn)
    return synonyms


@torch.no_grad()
def embed_prompts(encoder: TextEncoder, prompts: Sequence[str], batch_size: int = 256,
                  truncate: bool = True, progress: bool = True,
                  desc: str = "text prompts") -> torch.Tensor:
    """Encode many prompts in batches; returns un-normalised (N, D) float32 features on CPU.

    With ``truncate=True`` the prompts are grouped by token length (and put back in order)
    so each batch runs only up to its longest prompt. The features do not depend on
    ``truncate`` or ``batch_size`` (bit-identical; see :mod:`ovsam_core.text.fixed_shape`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    from tqdm.auto import tqdm

    tokens = encoder.tokenize(list(prompts))
    n = tokens.shape[0]
    order = torch.arange(n)
    if truncate and n > 1:
        order = torch.argsort(tokens.argmax(dim=-1), stable=True)
    out = torch.empty(n, encoder.output_dim, dtype=torch.float32)
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        out[idx] = encoder.encode(tokens[idx], truncate=truncate).float().cpu()
    return out


@torch.no_grad()
def build_classifier(encoder: TextEncoder, class_names: Sequence[str],
                     templates: Sequence[str] = VILD_TEMPLATES, batch_size: int = 256,
                     progress: bool = True, truncate: bool = True) -> torch.Tensor:
    """Build the (C, P, D) text classifier of a vocabulary.

    Args:
        encoder: the CLIP text encoder (put it in eval mode and on the device you want).
        class_names: C names; each may hold several synonyms (``'tv remote,remote control'``,
            LVIS ``'bat_(animal)'``), see :func:`split_label`.
        templates: prompt templates with one ``{}`` slot.
        batch_size: prompts per forward pass; prompts of all classes are batched together.
        progress: show a tqdm progress bar.
        truncate: see :meth:`TextEncoder.encode` (bit-identical results, several times faster).

    Returns:
        FloatTensor (C, P, D) on CPU, L2-normalised on the last dim, P = max synonyms per
        class; classes with fewer synonyms are padded with copies of their first one.
    """
    synonyms = _check_inputs(class_names, templates)
    prompts = [t.format(s) for syn in synonyms for s in syn for t in templates]
    feats = embed_prompts(encoder, prompts, batch_size=batch_size, truncate=truncate,
                          progress=progress, desc="text classifier")
    return classifier_from_features(feats, [len(s) for s in synonyms], len(templates))


def classifier_from_features(features: torch.Tensor, counts: Sequence[int],
                             n_templates: int) -> torch.Tensor:
    """The template-ensembling and padding part of :func:`build_classifier`.

    Args:
        features: (S * T, D) un-normalised prompt features ordered class, synonym, template
            (S = sum(counts) synonyms, T = n_templates).
        counts: number of synonyms of each of the C classes.
        n_templates: T.

    Returns:
        FloatTensor (C, P, D), P = max(counts): per synonym the L2-normalised mean of the
        L2-normalised template features; classes padded with their first synonym.
    """
    n_syn = sum(counts)
    if features.ndim != 2 or features.shape[0] != n_syn * n_templates or min(counts, default=0) < 1:
        raise ValueError(f"features must be (sum(counts) * n_templates, D) = "
                         f"({n_syn} * {n_templates}, D) with every count >= 1, got "
                         f"{tuple(features.shape)} and counts {list(counts)[:8]}...")
    feats = features.float().reshape(n_syn, n_templates, -1)
    protos = F.normalize(F.normalize(feats, dim=-1).mean(1), dim=-1)      # (S, D)
    out = protos.new_empty(len(counts), max(counts), protos.shape[-1])
    start = 0
    for c, k in enumerate(counts):
        out[c, :k] = protos[start:start + k]
        out[c, k:] = protos[start]
        start += k
    return out


def load_classifier_file(path: Union[str, os.PathLike]) -> torch.Tensor:
    """Load an upstream precomputed classifier (a bare tensor saved with ``torch.save``).

    E.g. ``RN50x16_LVISV1Dataset.pth`` (1203, 2, 768) or ``RN50x16_CocoOVDataset.pth``
    (80, 17, 768).

    Returns:
        FloatTensor (C, P, D) float32 on CPU.

    Raises:
        ValueError: the file is not a 3-D floating tensor L2-normalised on its last dim.
    """
    obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, torch.Tensor):
        raise ValueError(f"{path}: expected a bare tensor of shape (C, P, D) saved with torch.save, "
                         f"got {type(obj).__name__}; build one with build_classifier() and save it "
                         "with save_classifier().")
    if obj.ndim != 3 or not obj.is_floating_point():
        raise ValueError(f"{path}: expected a 3-D float tensor (classes, prototypes, dim), got "
                         f"shape {tuple(obj.shape)} dtype {obj.dtype}.")
    obj = obj.float()
    norms = obj.norm(dim=-1)
    if obj.numel() and not torch.allclose(norms, torch.ones_like(norms), atol=1e-4):
        raise ValueError(f"{path}: prototypes must be L2-normalised on the last dim (norms span "
                         f"{norms.min().item():.4g}..{norms.max().item():.4g}); normalise with "
                         "torch.nn.functional.normalize(x, dim=-1) before saving.")
    return obj


def save_classifier(classifier: torch.Tensor, path: Union[str, os.PathLike]) -> None:
    """Save a (C, P, D) classifier in upstream's format (bare float32 tensor, ``torch.save``)."""
    if classifier.ndim != 3:
        raise ValueError(f"classifier must be (C, P, D), got shape {tuple(classifier.shape)}.")
    torch.save(classifier.detach().float().cpu().contiguous(), os.fspath(path))


def synonym_counts(class_names: Iterable[str]) -> List[int]:
    """Number of synonyms of each class after :func:`split_label`."""
    return [len(split_label(n)) for n in class_names]
