"""Backend settings: one frozen dataclass, read from ``OVSAM_LS_*`` (and Label Studio's) env vars.

The CLI (``ovsam label-studio serve``) writes its options into the same environment variables,
so gunicorn workers, Docker and the CLI all configure the app the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from ovsam_core import (LABEL_SOURCES, PredictorOptions, PrelabelDefaults, check_options, dataclass_from_env,
                        dataclass_to_env, env_table, option, parse_hosts)


@dataclass(frozen=True)
class Settings(PredictorOptions, PrelabelDefaults):
    """Everything the backend is configured with: each field, its environment variable and default
    are in the README's *Settings* table (``plugins/label_studio/README.md``); a field with a
    command-line option declares it (:func:`ovsam_core.option`). The model and
    pre-labelling fields are :class:`ovsam_core.PredictorOptions` / :class:`ovsam_core.PrelabelDefaults`
    (a project's ``extra_params`` override the latter: :meth:`~.backend.Backend.auto_settings`).
    """

    model_dir: str = field(default="", metadata=option(
        "where the learned prototypes (SQLite) live (env OVSAM_LS_DATA_DIR or MODEL_DIR; default the platform's user "
        "data folder, e.g. ~/.local/share/ovsam/label-studio)", "--data-dir", "--model-dir"))
    label_studio_url: Optional[str] = field(default=None, metadata=option(
        "Label Studio's URL, e.g. for /data/... images (env LABEL_STUDIO_URL)", "--label-studio-url", "--url"))
    api_key: Optional[str] = field(default=None, metadata=option(
        "legacy token or personal access token (better: env LABEL_STUDIO_API_KEY; `ps` shows options)",
        "--api-key", "--token"))
    allowed_hosts: Tuple[str, ...] = field(default=(), metadata=option(
        "comma-separated extra hosts images may be downloaded from", type=parse_hosts))
    document_root: Optional[str] = field(default=None, metadata=option(
        "read /data/local-files/?d= paths from this folder (env LOCAL_FILES_DOCUMENT_ROOT)"))
    upload_dir: Optional[str] = field(default=None, metadata=option(
        "Label Studio's media/upload folder, if readable here"))
    max_image_bytes: int = 64 * 1024 ** 2
    max_image_pixels: int = 100_000_000
    max_body_bytes: int = 32 * 1024 ** 2
    fetch_timeout: float = 30.0
    basic_auth_user: Optional[str] = None
    basic_auth_pass: Optional[str] = None
    top_k: int = field(default=5, metadata=option("alternatives per region in its meta (default 5)", minimum=1))
    label_source: str = field(default="model", metadata=option(
        "interactive label: the recognised class (model, default) or the smart tool's label (smart)",
        choices=LABEL_SOURCES))
    learn: bool = field(default=True, metadata=option("do not learn prototypes from annotations", "--no-learn"))
    prototype_weight: float = 50.0
    max_prototypes: int = 100
    learn_async: bool = True
    warmup: bool = False
    image_cache_bytes: int = 256 * 1024 ** 2
    ml_timeout: float = 100.0
    extra: Dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.model_dir:  # e.g. ~/.local/share/ovsam/label-studio
            from platformdirs import user_data_dir

            object.__setattr__(self, "model_dir", str(Path(user_data_dir("ovsam", appauthor=False)) / "label-studio"))
        check_options(self)  # label_source's choices, top_k >= 1
        if self.label_studio_url and not self.label_studio_url.startswith(("http://", "https://")):
            raise ValueError(f"LABEL_STUDIO_URL must start with http:// or https://, got {self.label_studio_url!r}")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise ValueError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS (or neither)")
        self.auto_settings()  # a bad OVSAM_LS_AUTO / _POINTS_PER_SIDE / _MIN_SCORE fails at start

    @property
    def db_path(self) -> Path:
        return Path(self.model_dir) / "ovsam-label-studio.sqlite3"


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
