"""``ovsam label-studio connect``: a ready project in a running Label Studio, in one command (see the
README's introduction): smart keypoint and rectangle prompts, brush outputs, the images of a folder under
``LOCAL_FILES_DOCUMENT_ROOT`` through local-files storage, the backend connected (interactive).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from xml.sax.saxutils import quoteattr

from ovsam_core import IMAGE_SUFFIXES


def label_config(labels: Sequence[str]) -> str:
    """Smart keypoint + rectangle prompts and brush outputs with ``labels``."""
    lab = "".join(f"<Label value={quoteattr(n)}/>" for n in labels)
    return ("<View>\n  <Image name=\"image\" value=\"$image\"/>\n"
            f"  <KeyPointLabels name=\"kp\" toName=\"image\" smart=\"true\">{lab}</KeyPointLabels>\n"
            f"  <RectangleLabels name=\"prompt_box\" toName=\"image\" smart=\"true\" ovsam_skip=\"true\">{lab}"
            "</RectangleLabels>\n"
            f"  <BrushLabels name=\"brush\" toName=\"image\">{lab}</BrushLabels>\n</View>")


def connect(settings, images: Path, backend_url: str, labels: Optional[Sequence[str]] = None,
            title: str = "ovsam", document_root: Optional[str] = None) -> Dict[str, Any]:
    """Create the project, import ``images``, connect the backend; returns ids and URLs."""
    if not (document_root or settings.document_root):  # settings: from LOCAL_FILES_DOCUMENT_ROOT
        raise ValueError("set LOCAL_FILES_DOCUMENT_ROOT to the folder Label Studio serves local files from "
                         "(the same value Label Studio was started with)")
    root, folder = Path(document_root or settings.document_root).resolve(), images.resolve()
    if folder != root and root not in folder.parents:
        raise ValueError(f"{folder} is not under LOCAL_FILES_DOCUMENT_ROOT={root}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if not labels:
        from ovsam_core import get_model_spec, load_vocabulary

        vocab = settings.vocab or get_model_spec(settings.model).vocabulary
        labels = list(dict.fromkeys(load_vocabulary(vocab).display_names()))
    from .push import label_studio

    tasks: List[Dict[str, Any]] = [{"data": {"image": f"/data/local-files/?d={p.relative_to(root).as_posix()}"}}
                                   for p in files]
    with label_studio(settings) as ls:
        pid = ls.projects.create(title=title, label_config=label_config(labels)).id
        ls.import_storage.local.create(project=pid, path=str(folder), use_blob_urls=True, title="ovsam images")
        ls.projects.import_tasks(id=pid, request=tasks)
        ml = ls.ml.create(url=backend_url, project=pid, title="ovsam", is_interactive=True)
    if ml.state not in ("CO", "connected"):
        raise ValueError(f"Label Studio could not reach the backend at {backend_url} (state {ml.state}); "
                         "is `ovsam label-studio serve` running, and Label Studio started with "
                         "USE_DEFAULT_BANNED_SUBNETS=false?")
    return {"project": pid, "tasks": len(tasks), "labels": list(labels), "ml_backend": ml.id,
            "url": f"{settings.label_studio_url.rstrip('/')}/projects/{pid}/data"}
