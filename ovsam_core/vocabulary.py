"""Vocabularies from presets, lists and files, and their text classifiers with a disk cache.

Accepted vocabulary sources (:func:`load_vocabulary`):

* a preset name: ``coco`` (80 classes, upstream synonyms, 48/17 split), ``lvis`` (1203,
  mmdet order, base = common + frequent) or ``imagenet21k`` (19,167 WordNet classes);
* a Python list of names; each name may hold synonyms separated by commas (``"dog,puppy"``);
* a ``.txt`` file: one class per line, synonyms separated by commas, ``#`` starts a comment;
* a ``.json``/``.yaml``/``.yml`` file: a list of names, or of objects
  ``{"name": ..., "synonyms": [...], "parent": NAME, "children": [...]}`` (nested children
  build a hierarchy), optionally under a top-level ``"classes"`` key.

Text classifiers are computed in batches with a progress bar and cached on disk under
``<cache>/classifiers/``, keyed by the content that determines them (text-encoder weights,
class names, templates, ovsam version).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from .text import VILD_TEMPLATES, build_classifier, split_label
from .text.encoder import TextEncoder
from .text.vocab_data import VOCABULARIES, Vocabulary, get_vocabulary

if TYPE_CHECKING:
    from .modeling.ovsam_head import PackedClassifier

VocabSource = Union[str, os.PathLike, Sequence[str], Vocabulary]


class VocabularyError(ValueError):
    """A vocabulary cannot be read; the message says what to fix."""


def _normalise(name: str) -> str:
    return name.strip()


def vocabulary_from_list(names: Sequence[str], key: str = "custom",
                         parents: Optional[Sequence[Optional[int]]] = None) -> Vocabulary:
    """A vocabulary from class names (synonyms separated by commas)."""
    clean = [_normalise(n) for n in names]
    empty = [i for i, n in enumerate(clean) if not split_label(n)]
    if not clean:
        raise VocabularyError("the vocabulary is empty: give at least one class name")
    if empty:
        raise VocabularyError(f"class #{empty[0]} has no name; remove empty entries from the vocabulary")
    seen: Dict[str, int] = {}
    for i, n in enumerate(clean):
        if n.lower() in seen:
            raise VocabularyError(f"class {n!r} appears twice (#{seen[n.lower()]} and #{i}); "
                                  "merge duplicates into one line with synonyms")
        seen[n.lower()] = i
    return Vocabulary(key, tuple(clean), tuple(str(i) for i in range(len(clean))),
                      parents=tuple(parents) if parents is not None else None)


def _parse_structured(data: Any, origin: str) -> Vocabulary:
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if not isinstance(data, list):
        raise VocabularyError(f"{origin}: expected a list of classes (or {{'classes': [...]}})")
    names: List[str] = []
    parents: List[Optional[Any]] = []

    def visit(item: Any, parent: Optional[int]) -> None:
        if isinstance(item, str):
            names.append(item)
            parents.append(parent)
            return
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise VocabularyError(f"{origin}: each class must be a string or an object with a 'name'; got {item!r}")
        syn = item.get("synonyms") or []
        if isinstance(syn, str):
            syn = [syn]
        names.append(",".join([item["name"], *map(str, syn)]))
        parents.append(item.get("parent", parent))
        me = len(names) - 1
        for child in item.get("children") or []:
            visit(child, me)

    for it in data:
        visit(it, None)
    first = {split_label(n)[0] if split_label(n) else n: i for i, n in enumerate(names)}
    first.update({n.split(",")[0].strip(): i for i, n in enumerate(names)})
    resolved: List[Optional[int]] = []
    for p in parents:
        if p is None or isinstance(p, int):
            resolved.append(p)
        elif isinstance(p, str) and p.strip() in first:
            resolved.append(first[p.strip()])
        else:
            raise VocabularyError(f"{origin}: parent {p!r} is not a class of this vocabulary")
    has_tree = any(p is not None for p in resolved)
    return vocabulary_from_list(names, key="custom", parents=resolved if has_tree else None)


def vocabulary_from_file(path: Union[str, os.PathLike]) -> Vocabulary:
    """Read a ``.txt``, ``.json``, ``.yaml`` or ``.yml`` vocabulary file (see module doc)."""
    p = Path(path)
    if not p.is_file():
        raise VocabularyError(f"vocabulary file not found: {p}")
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VocabularyError(f"cannot read vocabulary file {p}: {e}") from e
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            return _parse_structured(json.loads(text), str(p))
        except json.JSONDecodeError as e:
            raise VocabularyError(f"{p} is not valid JSON: {e}") from e
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:  # pragma: no cover - pyyaml is a dependency
            raise VocabularyError("YAML vocabularies need PyYAML: pip install pyyaml") from e
        try:
            return _parse_structured(yaml.safe_load(text), str(p))
        except yaml.YAMLError as e:
            raise VocabularyError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from e
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return vocabulary_from_list([ln for ln in lines if ln])


def load_vocabulary(source: VocabSource) -> Vocabulary:
    """A :class:`Vocabulary` from a preset name, a list of names, or a file (see module doc)."""
    if isinstance(source, Vocabulary):
        return source
    if isinstance(source, (str, os.PathLike)):
        s = str(source)
        if s.lower() in VOCABULARIES:
            return get_vocabulary(s)
        if Path(s).expanduser().exists():
            return vocabulary_from_file(Path(s).expanduser())
        if looks_like_path(s):
            raise VocabularyError(f"vocabulary file not found: {s} (neither a preset "
                                  f"({', '.join(sorted(VOCABULARIES))}) nor an existing file; check the path)")
        raise VocabularyError(f"vocabulary {s!r} is neither a preset ({', '.join(sorted(VOCABULARIES))}) "
                              "nor an existing file")
    return vocabulary_from_list(list(source))


#: Suffixes of vocabulary files (``.txt``, ``.json``, ``.yaml``, ``.yml``).
VOCAB_FILE_SUFFIXES = (".txt", ".json", ".yaml", ".yml")


def is_preset(name: Any) -> bool:
    """True when ``name`` is a preset vocabulary's name (``coco``, ``lvis``, ...; any case)."""
    return isinstance(name, str) and name.strip().lower() in VOCABULARIES


def looks_like_path(text: str) -> bool:
    """True when ``text`` is meant as a file or folder, not as class names.

    The rule every entry point shares: text without a class separator (``,`` ``;`` ``|`` or a
    newline) that holds a path separator, starts with ``~`` or ``.``, or ends with a vocabulary
    file suffix is a path. A path that does not exist is an error, never a class name.
    """
    t = text.strip()
    if not t or any(c in t for c in ",;|\n"):
        return False
    return ("/" in t or os.sep in t or t.startswith(("~", "."))
            or t.lower().endswith(VOCAB_FILE_SUFFIXES))


def parse_vocabulary_text(text: str) -> Optional[Union[str, List[str]]]:
    """The one text syntax of a vocabulary, shared by every host's forms and command lines.

    * empty text: ``None`` (the caller's default, usually the model's vocabulary);
    * a preset name (``coco``, ``lvis``, ...): the lower-case preset name;
    * the path of an existing vocabulary file or ``ovsam vocab build`` folder: the path (``~``
      expanded), after checking that it reads;
    * otherwise class names separated by commas, semicolons or newlines, the synonyms of one
      class joined by ``|`` (``"dog|puppy, cat, traffic light"``): the list of names in
      :func:`load_vocabulary`'s list form (synonyms separated by commas: ``["dog,puppy", ...]``).

    Raises:
        VocabularyError: a path (:func:`looks_like_path`) that does not exist, an unreadable
            file or folder, or a list with empty or duplicate classes.
    """
    t = text.strip()
    if not t:
        return None
    if t.lower() in VOCABULARIES:
        return t.lower()
    p = Path(t).expanduser()
    if p.exists():
        if p.is_dir():
            load_vocabulary_bundle(p)
        else:
            vocabulary_from_file(p)
        return str(p)
    if looks_like_path(t):
        raise VocabularyError(f"vocabulary file not found: {t} (no such file or folder; check the path, or give "
                              f"a preset: {', '.join(sorted(VOCABULARIES))})")
    names = []
    for part in t.replace(";", ",").replace("\n", ",").split(","):
        syn = [s.strip() for s in part.split("|") if s.strip()]
        if syn:
            names.append(",".join(syn))
    vocabulary_from_list(names)
    return names


def vocabulary_to_text(names: Sequence[str]) -> str:
    """Inverse of :func:`parse_vocabulary_text` for a list of names (``"dog,puppy"`` -> ``dog|puppy``)."""
    return ", ".join("|".join(s.strip() for s in str(n).split(",") if s.strip()) for n in names)


def base_mask_for(vocab: Vocabulary, training_vocabulary: str) -> torch.Tensor:
    """(C,) bool: classes seen in training (``fused`` mode weights CLIP by 0.1 for them).

    A preset vocabulary uses its own split. For other vocabularies a class is *base* when one
    of its synonyms is a synonym of a base class of the model's training vocabulary
    (``lvis``: common + frequent; ``coco``: the 48 base classes), compared case-insensitively
    with ``_`` read as a space; every other class is novel.
    """
    if vocab.split is not None:
        return vocab.base_mask()
    train = get_vocabulary(training_vocabulary)
    seen = {s for n, sp in zip(train.names, train.split or ()) if sp == "base" for s in split_label(n)}
    return torch.tensor([any(s in seen for s in split_label(n)) for n in vocab.names], dtype=torch.bool)


def known_mask_for(vocab: Vocabulary) -> Optional[torch.Tensor]:
    """(C,) bool of classes that are base or novel; None when every class is (upstream's -1000 rule)."""
    if vocab.split is None or all(s in ("base", "novel") for s in vocab.split):
        return None
    return torch.tensor([s in ("base", "novel") for s in vocab.split], dtype=torch.bool)


@dataclass(frozen=True)
class TextClassifier:
    """A vocabulary with its (C, P, D) L2-normalised prototypes.

    ``signature`` is the content key (text weights, names, templates, version).
    """

    vocabulary: Vocabulary
    weights: torch.Tensor
    signature: str

    def __len__(self) -> int:
        return len(self.vocabulary)

    @cached_property
    def packed(self) -> "PackedClassifier":
        """The prototypes without synonym padding (computed once; what inference classifies with)."""
        from .modeling.ovsam_head import PackedClassifier

        return PackedClassifier.pack(self.weights)

    @cached_property
    def display_names(self) -> List[str]:
        """:meth:`Vocabulary.display_names`, computed once."""
        return self.vocabulary.display_names()


def classifier_signature(vocab: Vocabulary, text_weights_id: str,
                         templates: Sequence[str] = VILD_TEMPLATES) -> str:
    from . import __version__

    h = hashlib.sha256()
    h.update(json.dumps({"text": text_weights_id, "names": list(vocab.names), "templates": list(templates),
                         "ovsam": __version__.split("+")[0]}, sort_keys=True).encode())
    return h.hexdigest()


def _cache_path(signature: str, cache_dir: Optional[Path]) -> Path:
    from .weights.hub import cache_dir as default_cache

    return Path(cache_dir or default_cache()) / "classifiers" / f"{signature}.safetensors"


def get_classifier(
    vocab: Vocabulary,
    encoder: TextEncoder,
    text_weights_id: str,
    *,
    cache_dir: Optional[Path] = None,
    use_cache: bool = True,
    batch_size: int = 256,
    progress: bool = True,
) -> TextClassifier:
    """The classifier of ``vocab``: from the disk cache, else computed (and cached)."""
    from safetensors.torch import load_file, save_file

    sig = classifier_signature(vocab, text_weights_id)
    path = _cache_path(sig, cache_dir)
    if use_cache and path.is_file():
        try:
            return TextClassifier(vocab, load_file(str(path))["classifier"], sig)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            path.unlink(missing_ok=True)
    weights = build_classifier(encoder, list(vocab.names), batch_size=batch_size, progress=progress)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        os.close(fd)
        try:
            save_file({"classifier": weights.contiguous()}, tmp, metadata={"signature": sig})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return TextClassifier(vocab, weights, sig)


def save_vocabulary_bundle(clf: TextClassifier, out_dir: Union[str, os.PathLike]) -> Path:
    """Write ``vocabulary.json`` + ``classifier.safetensors`` (``ovsam vocab build``)."""
    from safetensors.torch import save_file

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    v = clf.vocabulary
    (d / "vocabulary.json").write_text(json.dumps(
        {"key": v.key, "names": list(v.names), "parents": list(v.parents) if v.parents else None,
         "split": list(v.split) if v.split else None, "signature": clf.signature}, indent=1))
    save_file({"classifier": clf.weights.contiguous()}, str(d / "classifier.safetensors"),
              metadata={"signature": clf.signature})
    return d


def load_vocabulary_bundle(path: Union[str, os.PathLike]) -> Tuple[Vocabulary, torch.Tensor, str]:
    """Read a folder written by :func:`save_vocabulary_bundle`."""
    from safetensors.torch import load_file

    d = Path(path)
    try:
        meta = json.loads((d / "vocabulary.json").read_text("utf-8"))
        weights = load_file(str(d / "classifier.safetensors"))["classifier"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise VocabularyError(f"{d} is not a vocabulary folder written by `ovsam vocab build`: {e}") from e
    vocab = Vocabulary(meta.get("key", "custom"), tuple(meta["names"]), tuple(str(i) for i in range(len(meta["names"]))),
                       split=tuple(meta["split"]) if meta.get("split") else None,
                       parents=tuple(meta["parents"]) if meta.get("parents") else None)
    if weights.shape[0] != len(vocab):
        raise VocabularyError(f"{d}: classifier has {weights.shape[0]} classes but vocabulary.json {len(vocab)}")
    return vocab, weights, meta.get("signature", "")
