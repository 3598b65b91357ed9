"""Find, download and verify the upstream weight files of a model.

Resolution order for one :class:`~ovsam_core.weights.registry.WeightFile` (and the
alternative files accepted for the same role):

1. ``weights_dir`` (``--weights-dir DIR``): the file under its official name
   (``wf.filename``), or under its path in the upstream repository (a ``git clone`` of the
   Hugging Face repo), or our pruned copy of it.
2. The ovsam cache (:func:`cache_dir`, ``$OVSAM_CACHE_DIR`` or the platform cache folder),
   then the Hugging Face cache (files another tool already fetched with ``huggingface_hub``).
3. A download: ``huggingface_hub.hf_hub_download`` for files hosted on the Hub (honours
   ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``), ``huggingface_hub``'s HTTP client for
   plain URLs. Nothing is downloaded when ``HF_HUB_OFFLINE=1`` or ``download=False``.

Every file whose sha256 is published is verified: downloads before they get their final
name (a failed or mismatching download leaves nothing behind), local files on first use
(results are remembered per (path, size, mtime) in ``verified.json`` so multi-GB files are
not re-hashed on every load). Files without a published hash are pinned to the hash seen at
their first download (a ``<file>.sha256`` sidecar) and checked against it afterwards.

Cache layout (``cache_dir()``)::

    files/<filename>                       verified upstream files, under their official names
    files/<filename>.sha256                hash recorded at first download (no published hash)
    files/<stem>.<prefixes>.safetensors    pruned ``keep_only`` files (SAM ViT-H -> prompt encoder),
                                           metadata {"source_file", "source_sha256", "kept_prefixes"}
    files/<stem>.<prefixes>.safetensors.sha256
    files/.download-*/                     downloads in progress (removed when they end)
    verified.json                          hash-verification results keyed by path, size, mtime
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .registry import ModelSpec, WeightFile

__all__ = [
    "WeightsError",
    "WeightsNotFoundError",
    "DownloadError",
    "HashMismatchError",
    "ENV_CACHE_DIR",
    "cache_dir",
    "files_dir",
    "is_offline",
    "pruned_filename",
    "candidate_for",
    "sha256_file",
    "find_local",
    "resolve_file",
    "resolve_model_files",
    "cache_status",
    "download_model",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable that overrides the cache folder.
ENV_CACHE_DIR = "OVSAM_CACHE_DIR"

_CHUNK = 8 * 1024 * 1024
_HASH_PROGRESS_MIN = 256 * 1024 * 1024     # show a bar when hashing files larger than this
_STALE_DOWNLOAD_S = 24 * 3600              # leftovers of killed downloads are removed after a day
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_LFS_POINTER_PREFIX = b"version https://git-lfs"


# --------------------------------------------------------------------------- errors
class WeightsError(RuntimeError):
    """Base class of the errors raised while locating or fetching weight files."""


class WeightsNotFoundError(WeightsError):
    """One or more weight files are neither in ``weights_dir`` nor in the cache and cannot be
    downloaded (offline mode, ``download=False``, no download source, or a failed download).

    Attributes:
        missing: the :class:`WeightFile` objects (primary file of each role) that are missing.
    """

    def __init__(self, message: str, missing: Sequence[WeightFile] = ()) -> None:
        super().__init__(message)
        self.missing: Tuple[WeightFile, ...] = tuple(missing)


class DownloadError(WeightsNotFoundError):
    """A download was attempted and failed (network, HTTP error, truncated transfer)."""


class HashMismatchError(WeightsError):
    """A file's sha256 differs from the published (or first-seen) hash.

    Attributes:
        path: the offending file (already deleted when it was a fresh download).
        expected: the hash it should have.
        actual: the hash it has.
    """

    def __init__(self, path: PathLike, expected: str, actual: str, hint: str = "", *,
                 source: Optional[str] = None) -> None:
        self.path = Path(path)
        self.expected = expected
        self.actual = actual
        self.source = source
        where = f"downloaded from {source}" if source else str(self.path)
        msg = f"sha256 mismatch for {self.path.name} ({where}): expected {expected}, got {actual}."
        super().__init__(f"{msg} {hint}".strip())


# --------------------------------------------------------------------------- locations
def cache_dir() -> Path:
    """The ovsam cache folder: ``$OVSAM_CACHE_DIR`` if set, else the platform user cache
    folder (``platformdirs.user_cache_dir("ovsam")``, e.g. ``~/.cache/ovsam`` on Linux).

    The folder is not created here.
    """
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ovsam"))


def files_dir() -> Path:
    """Where cached weight files live: ``cache_dir() / "files"``."""
    return cache_dir() / "files"


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, and as ``huggingface_hub`` read it at
    import). Offline, no file is downloaded, whether hosted on the Hub or at a plain URL."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())
    except (ImportError, AttributeError):  # pragma: no cover - very old huggingface_hub
        return False


def _hf_endpoint() -> Optional[str]:
    """``HF_ENDPOINT`` read at call time (huggingface_hub reads it once, at import)."""
    ep = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return ep or None


def _candidates(wf: WeightFile) -> List[WeightFile]:
    """The file and its accepted alternatives, in preference order, without duplicates."""
    out: List[WeightFile] = []
    todo = [wf]
    while todo:
        c = todo.pop(0)
        if all(c.filename != o.filename for o in out):
            out.append(c)
        todo.extend(c.alternatives)
    return out


def pruned_filename(wf: WeightFile) -> str:
    """Name of the pruned copy of a ``keep_only`` file, e.g.
    ``sam_vit_h_4b8939.prompt_encoder.safetensors`` (stem + the kept key prefixes)."""
    stem = Path(wf.filename).stem
    parts = sorted({re.sub(r"[^0-9A-Za-z_-]+", "_", r.src.strip(".")) for r in wf.rules if r.src})
    return f"{stem}.{'+'.join(parts) or 'pruned'}.safetensors"


def _kept_prefixes(wf: WeightFile) -> List[str]:
    return sorted({r.src for r in wf.rules})


def candidate_for(wf: WeightFile, path: PathLike) -> WeightFile:
    """Which of ``wf`` and its alternatives a path returned by :func:`resolve_file` is.

    Matches the official file name, the path in the repository and the pruned name; falls
    back to ``wf``.
    """
    name = Path(path).name
    for c in _candidates(wf):
        names = {c.filename, Path(c.path_in_repo or c.filename).name}
        if c.keep_only:
            names.add(pruned_filename(c))
        if name in names:
            return c
    return wf


def _direct_url(wf: WeightFile) -> Optional[str]:
    """A URL that downloads the file itself (``/resolve/`` for the Hub), for messages."""
    if wf.repo_id:
        kind = "" if wf.repo_type == "model" else f"{wf.repo_type}s/"
        base = _hf_endpoint() or "https://huggingface.co"
        return f"{base}/{kind}{wf.repo_id}/resolve/{wf.revision}/{wf.path_in_repo or wf.filename}"
    return wf.url


def _has_source(wf: WeightFile) -> bool:
    return bool(wf.repo_id or wf.url)


# --------------------------------------------------------------------------- hashing
def sha256_file(path: PathLike, *, progress: bool = False) -> str:
    """The sha256 (hex) of a file, read in 8 MiB chunks; a progress bar for big files."""
    path = Path(path)
    h = hashlib.sha256()
    size = path.stat().st_size
    bar = None
    if progress and size >= _HASH_PROGRESS_MIN:
        from tqdm.auto import tqdm

        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _VerifiedHashes:
    """``cache_dir()/verified.json``: sha256 of files, keyed by absolute path, valid while the
    file keeps the same size and mtime (so a 2.5 GB file is hashed once, not on every load).

    A file modified in place but given back its exact size and mtime is not noticed; this is
    the usual trade-off of build tools (make, pip's wheel cache)."""

    def __init__(self) -> None:
        self.path = cache_dir() / "verified.json"

    def _load(self) -> Dict[str, Dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, file: Path) -> Optional[str]:
        st = file.stat()
        entry = self._load().get(str(file.resolve()))
        if (isinstance(entry, dict) and entry.get("size") == st.st_size
                and entry.get("mtime_ns") == st.st_mtime_ns):
            sha = entry.get("sha256")
            return sha if isinstance(sha, str) else None
        return None

    def put(self, file: Path, sha: str) -> None:
        st = file.stat()
        data = {k: v for k, v in self._load().items() if Path(k).exists()}
        data[str(file.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        try:
            _atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except OSError as e:  # a read-only cache must not break loading
            logger.debug("cannot write %s: %s", self.path, e)


def _sha256_cached(path: Path, *, progress: bool = False) -> str:
    """sha256 of ``path``, from ``verified.json`` when the file is unchanged."""
    store = _VerifiedHashes()
    sha = store.get(path)
    if sha is None:
        sha = sha256_file(path, progress=progress)
        store.put(path, sha)
    return sha


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> Optional[str]:
    try:
        text = _sidecar(path).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text and _SHA256_RE.match(text[0].lower()) else None


def _write_sidecar(path: Path, sha: str) -> None:
    _atomic_write_text(_sidecar(path), f"{sha}  {path.name}\n")


def _lfs_pointer_hint(path: Path) -> str:
    try:
        if path.stat().st_size < 1024 and path.read_bytes().startswith(_LFS_POINTER_PREFIX):
            return (" This file is a Git LFS pointer, not the weights: run `git lfs pull` in the "
                    "clone, or download the file itself.")
    except OSError:
        pass
    return ""


# --------------------------------------------------------------------------- safetensors header
def _safetensors_metadata(path: Path) -> Optional[Dict[str, str]]:
    """The ``__metadata__`` of a safetensors file, read from its JSON header (no torch)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > 100 * 1024 * 1024:
                return None
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


# --------------------------------------------------------------------------- local lookup
def _check_published(c: WeightFile, path: Path, hint: str, progress: bool) -> Path:
    """Verify ``path`` against ``c.sha256`` (cached result); raise on mismatch."""
    assert c.sha256 is not None
    actual = _sha256_cached(path, progress=progress)
    if actual != c.sha256.lower():
        raise HashMismatchError(path, c.sha256.lower(), actual, hint + _lfs_pointer_hint(path))
    return path


def _check_pinned(path: Path, progress: bool) -> Path:
    """Verify a cached file without a published hash against its ``.sha256`` sidecar."""
    recorded = _read_sidecar(path)
    actual = _sha256_cached(path, progress=progress)
    if recorded is None:
        _write_sidecar(path, actual)
        logger.warning("%s has no recorded sha256 (upstream publishes none); recorded %s in %s.",
                       path, actual, _sidecar(path))
        return path
    if actual != recorded:
        raise HashMismatchError(
            path, recorded, actual,
            f"It changed since it was first downloaded (hash recorded in {_sidecar(path)}). Upstream "
            f"publishes no hash for this file, so this copy cannot be trusted: delete {path} (and "
            f"its .sha256 file) to download it again, or delete only the .sha256 file if you "
            f"replaced it on purpose.")
    return path


def _pruned_ok(c: WeightFile, path: Path) -> bool:
    """Whether ``path`` is a pruned copy of ``c`` (its metadata names ``c``'s source and hash)."""
    meta = _safetensors_metadata(path)
    if meta is None:
        return False
    if meta.get("source_file") != c.filename:
        logger.warning("ignoring %s: it was not made from %s (metadata source_file=%r)",
                       path, c.filename, meta.get("source_file"))
        return False
    if c.sha256 and meta.get("source_sha256", "").lower() != c.sha256.lower():
        logger.warning("ignoring %s: it was made from another version of %s (source_sha256=%s, "
                       "expected %s)", path, c.filename, meta.get("source_sha256"), c.sha256)
        return False
    return True


def _look_in_weights_dir(c: WeightFile, d: Path, progress: bool, strict_hashes: bool) -> Optional[Path]:
    names = [c.filename]
    if c.path_in_repo and c.path_in_repo != c.filename:
        names.append(c.path_in_repo)
    for name in names:
        p = d / name
        if p.is_file():
            if c.sha256:
                try:
                    return _check_published(
                        c, p, f"This is not the official {c.filename}: replace it with the file from "
                              f"{c.source}, or remove it from {d}.", progress)
                except HashMismatchError as e:
                    if strict_hashes or _lfs_pointer_hint(p):
                        raise
                    # Files given explicitly may be the user's own (e.g. trained with
                    # `ovsam train`, saved in the upstream layout): keys are still loaded strictly.
                    logger.warning("%s differs from the official release (sha256 %s, official %s); "
                                   "using it because it was given explicitly (strict_hashes=True "
                                   "refuses it).", p, e.actual, e.expected)
                    return p
            logger.debug("using %s (no published sha256 to check)", p)
            return p
    if c.keep_only:
        p = d / pruned_filename(c)
        if p.is_file() and _pruned_ok(c, p):
            return p
    return None


def _look_in_cache(c: WeightFile, progress: bool) -> Optional[Path]:
    fdir = files_dir()
    if c.keep_only:
        p = fdir / pruned_filename(c)
        if p.is_file() and _pruned_ok(c, p):
            return _check_pinned(p, progress)
    p = fdir / c.filename
    if p.is_file():
        if c.sha256:
            return _check_published(
                c, p, f"The cached file is corrupted or was modified: delete it and run again to "
                      f"download it anew (or put the official file from {c.source} there).", progress)
        return _check_pinned(p, progress)
    return None


def _look_in_hf_cache(c: WeightFile, progress: bool) -> Optional[Path]:
    """A copy in the Hugging Face cache (e.g. fetched by ``hf download``), never downloading."""
    if not c.repo_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(c.repo_id, c.path_in_repo or c.filename,
                                       revision=c.revision, repo_type=c.repo_type)
    except Exception as e:  # noqa: BLE001 - an unreadable HF cache is just "not there"
        logger.debug("Hugging Face cache lookup failed for %s: %s", c.filename, e)
        return None
    if not isinstance(found, str) or not Path(found).is_file():
        return None
    p = Path(found)
    if c.sha256:
        return _check_published(
            c, p, "This copy in the Hugging Face cache is corrupted: delete it (see `hf cache`) and "
                  "run again.", progress)
    return p


def find_local(wf: WeightFile, weights_dir: Optional[PathLike] = None, *,
               progress: bool = False, strict_hashes: bool = False) -> Optional[Path]:
    """Steps 1-2 of :func:`resolve_file`: the verified local path of ``wf`` (or of an
    accepted alternative) in ``weights_dir``, the ovsam cache or the Hugging Face cache;
    ``None`` when there is none. Never touches the network.

    Raises:
        HashMismatchError: a file is present but is not the expected one.
        WeightsError: ``weights_dir`` is not a folder.
    """
    cands = _candidates(wf)
    if weights_dir is not None:
        d = Path(weights_dir).expanduser()
        if not d.is_dir():
            raise WeightsError(f"weights folder {d} does not exist or is not a folder "
                               "(check --weights-dir / weights_dir)")
        for c in cands:
            p = _look_in_weights_dir(c, d, progress, strict_hashes)
            if p is not None:
                return p
    for c in cands:
        p = _look_in_cache(c, progress)
        if p is not None:
            return p
    for c in cands:
        p = _look_in_hf_cache(c, progress)
        if p is not None:
            return p
    return None


# --------------------------------------------------------------------------- download
def _progress_class(progress: bool) -> Optional[type]:
    """tqdm class handed to huggingface_hub: its own bars (which honour
    ``HF_HUB_DISABLE_PROGRESS_BARS``) or a disabled bar."""
    if progress:
        return None
    from tqdm.auto import tqdm

    class _NoBar(tqdm):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _NoBar


def _library_version() -> str:
    try:
        from importlib.metadata import version

        return version("ovsam")
    except Exception:  # noqa: BLE001 - not installed (source checkout)
        return "dev"


def _remove_stale_downloads(fdir: Path) -> None:
    now = time.time()
    for p in fdir.glob(".download-*"):
        try:
            if now - p.stat().st_mtime > _STALE_DOWNLOAD_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _fetch(c: WeightFile, tmp: Path, progress: bool) -> Path:
    """Download ``c`` into the folder ``tmp``; return the downloaded file."""
    tqdm_class = _progress_class(progress)
    if c.repo_id:
        from huggingface_hub import hf_hub_download

        got = hf_hub_download(
            c.repo_id, c.path_in_repo or c.filename, repo_type=c.repo_type, revision=c.revision,
            local_dir=tmp, endpoint=_hf_endpoint(), tqdm_class=tqdm_class,
            library_name="ovsam", library_version=_library_version(),
        )
        return Path(got)
    assert c.url is not None
    from huggingface_hub.file_download import http_get

    part = tmp / (c.filename + ".part")
    with open(part, "wb") as f:
        # No Hugging Face token is sent to a non-Hub URL: only the headers given here.
        http_get(c.url, f, headers={"User-Agent": f"ovsam/{_library_version()}"},
                 expected_size=c.size, displayed_filename=c.filename, tqdm_class=tqdm_class)
    return part


def _prune(c: WeightFile, src: Path, sha: str, out: Path) -> None:
    """Save the keys of ``src`` under ``c``'s rule prefixes to ``out`` (safetensors)."""
    import torch
    from safetensors.torch import save_file

    obj = torch.load(str(src), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{c.filename} does not hold a state dict; cannot keep its "
                           f"{_kept_prefixes(c)} keys")
    prefixes = tuple(_kept_prefixes(c))
    kept = {k: v.detach().clone().contiguous() for k, v in obj.items()
            if isinstance(v, torch.Tensor) and k.startswith(prefixes)}
    if not kept:
        raise WeightsError(f"{c.filename} holds no key starting with {list(prefixes)}: is it the "
                           f"right file (see {c.source})?")
    save_file(kept, str(out), metadata={
        "source_file": c.filename, "source_sha256": sha,
        "kept_prefixes": json.dumps(list(prefixes)), "format": "pt",
    })


def _download(c: WeightFile, progress: bool) -> Path:
    """Download, verify and install ``c`` into the cache; return its cached path."""
    fdir = files_dir()
    fdir.mkdir(parents=True, exist_ok=True)
    _remove_stale_downloads(fdir)
    # A private folder next to the final files: same filesystem, so os.replace is atomic, and
    # nothing in it has a final name until it is verified. Removed whatever happens.
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=fdir))
    try:
        try:
            got = _fetch(c, tmp, progress)
        except Exception as e:  # noqa: BLE001 - any transport/HTTP failure, re-raised with a fix
            raise DownloadError(
                f"could not download {c.filename} from {_direct_url(c)}: {type(e).__name__}: {e}\n"
                f"Check your connection (and HF_ENDPOINT / proxy settings), then run again; or "
                f"download it yourself and pass the folder holding it as --weights-dir DIR "
                f"(or put it in {fdir}).", [c]) from e
        actual = sha256_file(got, progress=progress)
        if c.sha256 and actual != c.sha256.lower():
            got.unlink(missing_ok=True)
            raise HashMismatchError(
                fdir / c.filename, c.sha256.lower(), actual,
                "The download was deleted. The server sent other content than the published "
                "file: retry later, check HF_ENDPOINT / proxies, or report it if the upstream "
                "file changed.", source=_direct_url(c))
        if not c.sha256:
            logger.warning("upstream publishes no sha256 for %s; recorded the downloaded file's "
                           "hash %s and will check later loads against it.", c.filename, actual)
        if c.keep_only:
            final = fdir / pruned_filename(c)
            staged = tmp / final.name
            _prune(c, got, actual, staged)
            got.unlink(missing_ok=True)          # free the big file before the small one lands
            staged_sha = sha256_file(staged)
            _write_sidecar(final, staged_sha)
            os.replace(staged, final)
            _VerifiedHashes().put(final, staged_sha)
            logger.info("kept %s of %s in %s", _kept_prefixes(c), c.filename, final)
            return final
        final = fdir / c.filename
        if not c.sha256:
            _write_sidecar(final, actual)
        os.replace(got, final)
        _VerifiedHashes().put(final, actual)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- public API
_NO_DOWNLOAD = "downloads disabled: download=False"
_OFFLINE = "offline mode: HF_HUB_OFFLINE=1"


def _offline_reason(download: bool) -> Optional[str]:
    if not download:
        return _NO_DOWNLOAD
    if is_offline():
        return _OFFLINE
    return None


def _describe_missing(wf: WeightFile, reason: str = "") -> str:
    cands = _candidates(wf)
    names = " or ".join(c.filename for c in cands)
    lines = [f"  - {wf.role}: {names}" + (f"  [{reason}]" if reason else "")]
    for c in cands:
        if _has_source(c):
            direct = _direct_url(c)
            extra = f" (file: {direct})" if direct and direct != c.source else ""
            lines.append(f"      {c.filename}: download from {c.source}{extra}")
        else:
            lines.append(f"      {c.filename}: no public download; you must provide it")
    return "\n".join(lines)


def _missing_message(entries: Sequence[Tuple[WeightFile, str]], why: str,
                     model: Optional[str] = None) -> str:
    what = f"model {model!r}" if model else "the model"
    head = (f"{len(entries)} weight file(s) of {what} are missing ({why}):" if why
            else f"{len(entries)} weight file(s) of {what} are missing:")
    body = "\n".join(_describe_missing(wf, r) for wf, r in entries)
    tail = ("How to fix: put these files, under exactly these names, in a folder and pass "
            "--weights-dir DIR (weights_dir=DIR in Python), or copy them into the cache "
            f"folder {files_dir()} (set {ENV_CACHE_DIR} to move it)")
    fetch = f"`ovsam download {model or 'MODEL'}` on a machine with internet access"
    if why == _OFFLINE:
        tail += f", or unset HF_HUB_OFFLINE to let ovsam download them ({fetch})."
    elif why == _NO_DOWNLOAD:
        tail += f", or allow downloads (drop download=False / --no-download; {fetch})."
    else:
        tail += "."
    return f"{head}\n{body}\n{tail}"


def resolve_file(wf: WeightFile, weights_dir: Optional[PathLike] = None, *,
                 download: bool = True, progress: bool = True, strict_hashes: bool = False) -> Path:
    """The local, verified path of ``wf`` (or of one of its accepted alternatives).

    Looks in ``weights_dir`` (official file name), then the ovsam cache and the Hugging
    Face cache, then downloads into the ovsam cache unless ``download=False`` or
    ``HF_HUB_OFFLINE=1``. For a ``keep_only`` file the download is pruned to the keys its
    rules use and the path of that small safetensors file is returned.

    Raises:
        WeightsNotFoundError: not found locally and downloads are off or impossible.
        DownloadError: (a WeightsNotFoundError) every download attempt failed.
        HashMismatchError: a file has the wrong sha256 (a bad download is deleted first).
    """
    found = find_local(wf, weights_dir, progress=progress, strict_hashes=strict_hashes)
    if found is not None:
        return found
    why = _offline_reason(download)
    if why is not None:
        raise WeightsNotFoundError(_missing_message([(wf, "")], why), [wf])
    sources = [c for c in _candidates(wf) if _has_source(c)]
    if not sources:
        raise WeightsNotFoundError(_missing_message([(wf, "no download source")], ""), [wf])
    errors: List[DownloadError] = []
    for c in sources:
        try:
            return _download(c, progress)
        except DownloadError as e:
            errors.append(e)
            if len(sources) > 1:
                logger.warning("%s", e)
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError("\n".join(str(e) for e in errors), [wf]) from errors[-1]


def resolve_model_files(spec: ModelSpec, weights_dir: Optional[PathLike] = None, *,
                        download: bool = True, progress: bool = True,
                        strict_hashes: bool = False) -> Dict[str, Path]:
    """Resolve every file of ``spec`` (see :func:`resolve_file`): ``{role: path}``.

    All files are tried before failing, so one :class:`WeightsNotFoundError` lists every
    missing file with its official name, where to put it and where to download it.
    A :class:`HashMismatchError` is raised at once.
    """
    paths: Dict[str, Path] = {}
    missing: List[Tuple[WeightFile, str]] = []
    failures: List[DownloadError] = []
    why = _offline_reason(download)
    for wf in spec.files:
        try:
            paths[wf.role] = resolve_file(wf, weights_dir, download=download, progress=progress,
                                          strict_hashes=strict_hashes)
        except DownloadError as e:
            failures.append(e)
            missing.append((wf, f"download failed: {str(e).splitlines()[0]}"))
        except WeightsNotFoundError:
            missing.append((wf, "" if why else "no download source"))
    if missing:
        msg = _missing_message(missing, why or "", spec.name)
        cls = DownloadError if failures else WeightsNotFoundError
        raise cls(msg, [wf for wf, _ in missing]) from (failures[0] if failures else None)
    return paths


def _present(c: WeightFile, weights_dir: Optional[Path]) -> bool:
    """Existence check without hashing (for status displays)."""
    dirs = ([weights_dir] if weights_dir is not None else []) + [files_dir()]
    for d in dirs:
        if (d / c.filename).is_file():
            return True
        if d == weights_dir and c.path_in_repo and (d / c.path_in_repo).is_file():
            return True
        if c.keep_only:
            p = d / pruned_filename(c)
            if p.is_file() and _pruned_ok(c, p):
                return True
    if c.repo_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(c.repo_id, c.path_in_repo or c.filename,
                                           revision=c.revision, repo_type=c.repo_type)
            return isinstance(found, str)
        except Exception:  # noqa: BLE001
            return False
    return False


def cache_status(spec: ModelSpec, weights_dir: Optional[PathLike] = None) -> Dict[str, bool]:
    """``{role: available}``: whether each file of ``spec`` (or an accepted alternative) is
    in ``weights_dir``, the ovsam cache or the Hugging Face cache. Fast: checks presence
    (and a pruned file's metadata), does not hash; loading verifies."""
    d = Path(weights_dir).expanduser() if weights_dir is not None else None
    return {wf.role: any(_present(c, d) for c in _candidates(wf)) for wf in spec.files}


def download_model(spec: ModelSpec, progress: bool = True) -> Dict[str, Path]:
    """Fetch (and verify) every file of ``spec`` into the cache, for ``ovsam download``.

    Files already cached are verified, not downloaded again. Returns ``{role: path}``.
    """
    return resolve_model_files(spec, None, download=True, progress=progress)
