"""``ovsam label-studio prelabel``: predictions for every task of a project, pushed through the REST API
(README, *Large projects*): each task goes through the same :class:`~.backend.Backend` as
``/predict`` and its prediction is posted at once; tasks that already have a prediction of the
backend's ``model_version`` are skipped, so a killed run resumes without duplicates.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ovsam_core import BatchReport, run_batch


@contextmanager
def label_studio(settings) -> Iterator[Any]:
    """label-studio-sdk's client (``LabelStudio``) with the backend's credentials: a legacy token or a
    personal access token (the SDK exchanges and renews it); no proxies from the environment.
    An error answer of Label Studio becomes a ``ValueError`` (a usage error of the command)."""
    import httpx
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    if not settings.label_studio_url:
        raise ValueError("set LABEL_STUDIO_URL (or --url), e.g. http://127.0.0.1:8080, and LABEL_STUDIO_API_KEY")
    with httpx.Client(trust_env=False, timeout=120) as http:
        try:
            yield LabelStudio(base_url=settings.label_studio_url.rstrip("/"), api_key=settings.api_key or "",
                              httpx_client=http)
        except ApiError as e:
            raise ValueError(f"Label Studio answered {e.status_code}: {str(e.body)[:300]}") from None


def prelabel_project(settings, project: int, extra_params: Optional[Mapping[str, Any]] = None, *,
                     show_progress: bool = True, backend=None) -> BatchReport:
    """Predict every task of ``project`` that has no prediction of the backend's model version yet
    and post it; ``extra_params`` (``auto``, ``points_per_side``, ``min_score``) override the
    connected ML backend's extra params and the settings."""
    from .backend import Backend, BackendError

    with label_studio(settings) as ls:
        config = ls.projects.get(id=int(project)).label_config
        params: Dict[str, Any] = {}  # the connected ML backend's extra params, then the command line
        for ml in ls.ml.list(project=int(project)):
            params.update(ml.extra_params if isinstance(ml.extra_params, Mapping) else {})
        params.update({k: v for k, v in (extra_params or {}).items() if v is not None})
        b = backend or Backend(replace(settings, learn=False, ml_timeout=float("inf")))
        key = str(int(project))
        b.setup({"project": key, "schema": config, "extra_params": params}, persist=False)
        version = b.model_version  # the same as `serve`'s: "Retrieve predictions" skips these tasks too
        done = {p.task for p in ls.predictions.list(project=int(project)) if p.model_version == version}
        with warnings.catch_warnings():  # pydantic warns that the SDK types `annotations` as a string
            warnings.simplefilter("ignore", UserWarning)
            tasks: List[Dict[str, Any]] = [t.dict(exclude_unset=True) for t in ls.tasks.list(project=int(project))]

        def process(task: Dict[str, Any]) -> int:
            out = b.predict({"tasks": [task], "label_config": config, "project": key, "params": {"context": None}})
            res = out["results"][0]
            if "result" not in res:
                raise BackendError(res.get("error", "no prediction"), 422)
            ls.predictions.create(task=task["id"], result=res["result"], score=res["score"], model_version=version)
            return len(res["result"])

        return run_batch(tasks, process, key=lambda t: t["id"], done=lambda k: k in done, errors=(BackendError,),
                         name=lambda t: f"task {t['id']}", desc=f"prelabel project {project}", unit="task",
                         show_progress=show_progress)
