"""Backend settings: one frozen dataclass, read from ``OVSAM_LS_*`` (and Label Studio's) env vars.

The CLI (``ovsam label-studio serve``) writes its options into the same environment variables,
so gunicorn workers, Docker and the CLI all configure the app the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from ovsam_core import PredictorOptions, PrelabelDefaults, dataclass_from_env, dataclass_to_env, env_table


def parse_hosts(v: str) -> Tuple[str, ...]:
    """``"a.example, B.example:8080"`` (commas or semicolons) -> lower-case host names."""
    return tuple(h.strip().lower() for h in v.replace(";", ",").split(",") if h.strip())


def default_data_dir() -> Path:
    """``<platform user data dir>/ovsam/label-studio`` (e.g. ``~/.local/share/ovsam/label-studio``)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("ovsam", appauthor=False)) / "label-studio"


@dataclass(frozen=True)
class Settings(PredictorOptions, PrelabelDefaults):
    """Everything the backend is configured with.

    Attributes:
        model, vocab, device, dtype, weights_dir, weights, cache_bytes, download: how the model is
            loaded (:class:`ovsam_core.PredictorOptions`); ``vocab`` ``None`` (default): the
            project's own labels (+ their ``predicted_values``) are the vocabulary.
        auto / points_per_side / min_score: pre-labelling of tasks without regions
            (:class:`ovsam_core.PrelabelDefaults`); a project's ``extra_params`` override them
            (:meth:`~.backend.Backend.auto_settings`).
        model_dir: where the prototypes database lives (``--data-dir``, ``OVSAM_LS_DATA_DIR`` or
            ``MODEL_DIR`` as in label-studio-ml); default :func:`default_data_dir` (the platform's
            user data folder, never the current directory).
        label_studio_url / api_key: how to fetch ``/data/...`` images (legacy token or personal
            access token); ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``.
        allowed_hosts: extra hosts images may be fetched from (besides Label Studio's).
        document_root: local-files root (``LOCAL_FILES_DOCUMENT_ROOT``): ``/data/local-files/?d=``
            paths are read from here directly, never from outside it.
        upload_dir: Label Studio's ``media/upload`` folder, when the backend can read it.
        max_image_bytes / max_image_pixels / max_body_bytes: request and image limits.
        basic_auth_user / basic_auth_pass: optional HTTP basic auth on the backend itself.
        top_k: alternatives reported per region.
        label_source: ``model`` (the recognised class) or ``smart`` (the label the annotator chose
            on the smart tool, when it is one of the output control's labels).
        learn: store prototypes from ``ANNOTATION_CREATED/UPDATED`` webhooks.
        prototype_weight / max_prototypes: few-shot blending weight; prototypes kept per label.
        learn_async: process webhooks in a background thread (Label Studio waits 1 s at most).
        warmup: start loading the model in the background when a worker starts.
        image_cache_bytes: LRU of decoded images by URL.
        ml_timeout: how long Label Studio waits for ``/predict`` (its ``ML_TIMEOUT_PREDICT``,
            default 100 s); a batch running longer is cut and the log points to ``prelabel``.
    """

    model_dir: str = ""
    label_studio_url: Optional[str] = None
    api_key: Optional[str] = None
    allowed_hosts: Tuple[str, ...] = ()
    document_root: Optional[str] = None
    upload_dir: Optional[str] = None
    max_image_bytes: int = 64 * 1024 ** 2
    max_image_pixels: int = 100_000_000
    max_body_bytes: int = 32 * 1024 ** 2
    fetch_timeout: float = 30.0
    basic_auth_user: Optional[str] = None
    basic_auth_pass: Optional[str] = None
    top_k: int = 5
    label_source: str = "model"
    learn: bool = True
    prototype_weight: float = 50.0
    max_prototypes: int = 100
    learn_async: bool = True
    warmup: bool = False
    image_cache_bytes: int = 256 * 1024 ** 2
    ml_timeout: float = 100.0
    extra: Dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.model_dir:
            object.__setattr__(self, "model_dir", str(default_data_dir()))
        if self.label_source not in ("model", "smart"):
            raise ValueError(f"label_source must be 'model' or 'smart', got {self.label_source!r}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.label_studio_url and not self.label_studio_url.startswith(("http://", "https://")):
            raise ValueError(f"LABEL_STUDIO_URL must start with http:// or https://, got {self.label_studio_url!r}")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS (or neither)")
        self.auto_settings()  # a bad OVSAM_LS_AUTO / _POINTS_PER_SIDE / _MIN_SCORE fails at start

    @property
    def db_path(self) -> Path:
        return Path(self.model_dir) / "ovsam-label-studio.sqlite3"

    def with_(self, **kw) -> "Settings":
        return replace(self, **kw)


#: env var -> (field, parser): Label Studio's / label-studio-ml's names, ``OVSAM_LS_<FIELD>`` for
#: every field (except the ones only Label Studio's names set), then the aliases that win over them.
_ENV = env_table(
    Settings, "OVSAM_LS_",
    before={"MODEL_DIR": "model_dir", "LABEL_STUDIO_HOST": "label_studio_url", "LABEL_STUDIO_URL": "label_studio_url",
            "LABEL_STUDIO_ACCESS_TOKEN": "api_key", "LABEL_STUDIO_API_KEY": "api_key",
            "LOCAL_FILES_DOCUMENT_ROOT": "document_root", "ML_SERVER_BASIC_AUTH_USER": "basic_auth_user",
            "ML_SERVER_BASIC_AUTH_PASS": "basic_auth_pass", "BASIC_AUTH_USER": "basic_auth_user",
            "BASIC_AUTH_PASS": "basic_auth_pass"},
    after={"OVSAM_LS_DATA_DIR": "model_dir", "ML_TIMEOUT_PREDICT": "ml_timeout"},
    skip=("label_studio_url", "api_key", "basic_auth_user", "basic_auth_pass", "ml_timeout", "extra"),
    parsers={"allowed_hosts": parse_hosts})


def settings_from_env(env: Optional[Mapping[str, str]] = None, **overrides) -> Settings:
    """Settings from environment variables (later names in :data:`_ENV` win), then ``overrides``."""
    return dataclass_from_env(Settings, _ENV, env, **overrides)


def settings_to_env(s: Settings) -> Dict[str, str]:
    """The ``OVSAM_LS_*`` / Label Studio environment that reproduces ``s`` (for worker processes)."""
    return dataclass_to_env(s, _ENV)
