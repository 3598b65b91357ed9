"""``ovsam label-studio prelabel``: predictions for every task of a project, pushed through the REST API.

For projects too large for "Retrieve predictions" (Label Studio waits ``ML_TIMEOUT_PREDICT``,
100 s by default, for one ``/predict``). Each task goes through the same :class:`~.backend.Backend`
as ``/predict`` (tasks with boxes/clicks are segmented from them, the others pre-labelled with
the project's labels) and its prediction is posted at once, with the backend's ``model_version``.
Resumable: a task that already has a prediction of that version (in Label Studio itself) is
skipped, so a run killed at any point and started again finishes the project without duplicates.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Mapping, Optional

from ovsam_core import BatchReport, run_batch


class LabelStudioApi:
    """Label Studio's REST API with the backend's credentials (legacy token or personal access token)."""

    def __init__(self, settings) -> None:
        import requests

        from .fetch import ImageFetcher

        if not settings.label_studio_url:
            raise ValueError("set LABEL_STUDIO_URL (or --url), e.g. http://127.0.0.1:8080, and LABEL_STUDIO_API_KEY")
        self.base = settings.label_studio_url.rstrip("/")
        self._fetcher = ImageFetcher(settings)  # its token handling
        self._http = requests.Session()
        self._http.trust_env = False

    def __call__(self, method: str, path: str, data: Any = None) -> Any:
        headers = {"Authorization": self._fetcher._auth_header() or ""}
        r = self._http.request(method, self.base + path, json=data, headers=headers, timeout=120)
        if r.status_code >= 400:
            raise ValueError(f"Label Studio answered {r.status_code} to {method} {path}: {r.text[:300]}")
        return r.json() if r.content else None

    def tasks(self, project: int, page_size: int = 100) -> Iterator[Dict[str, Any]]:
        """Every task of ``project`` with its annotations and predictions."""
        page, seen = 1, 0
        while True:
            out = self("GET", f"/api/tasks?project={project}&fields=all&page={page}&page_size={page_size}")
            batch = out.get("tasks", []) if isinstance(out, Mapping) else out
            yield from batch
            seen += len(batch)
            if not batch or seen >= int(out.get("total", seen) if isinstance(out, Mapping) else seen):
                return
            page += 1


def prelabel_project(settings, project: int, extra_params: Optional[Mapping[str, Any]] = None, *,
                     show_progress: bool = True, backend=None) -> BatchReport:
    """Predict every task of ``project`` that has no prediction of the backend's model version yet
    and post it; ``extra_params`` (``auto``, ``points_per_side``, ``min_score``) override the
    connected ML backend's extra params and the settings."""
    from .backend import Backend, BackendError

    api = LabelStudioApi(settings)
    proj = api("GET", f"/api/projects/{int(project)}")
    params: Dict[str, Any] = {}  # the connected ML backend's extra params, then the command line
    for ml in api("GET", f"/api/ml?project={int(project)}") or []:
        params.update(ml["extra_params"] if isinstance(ml.get("extra_params"), Mapping) else {})
    params.update({k: v for k, v in (extra_params or {}).items() if v is not None})
    b = backend or Backend(settings.with_(learn=False, ml_timeout=float("inf")))
    key = str(int(project))
    b.setup({"project": key, "schema": proj["label_config"], "extra_params": params}, persist=False)
    version = b.model_version  # the same as `serve`'s: "Retrieve predictions" skips these tasks too
    done = {p.get("task") for p in api("GET", f"/api/predictions?project={int(project)}") or []
            if p.get("model_version") == version}
    tasks: List[Dict[str, Any]] = list(api.tasks(int(project)))

    def process(task: Dict[str, Any]) -> int:
        out = b.predict({"tasks": [task], "label_config": proj["label_config"], "project": key,
                         "params": {"context": None}})
        res = out["results"][0]
        if "result" not in res:
            raise BackendError(res.get("error", "no prediction"), 422)
        api("POST", "/api/predictions", {"task": task["id"], "result": res["result"], "score": res["score"],
                                         "model_version": version})
        return len(res["result"])

    return run_batch(tasks, process, key=lambda t: t["id"], done=lambda k: k in done, errors=(BackendError,),
                     name=lambda t: f"task {t['id']}", desc=f"prelabel project {project}", unit="task",
                     show_progress=show_progress)
