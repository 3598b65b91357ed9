"""Builders of Label Studio JSON (shapes recorded from Label Studio 1.23.2) and test scenes."""
from __future__ import annotations

import copy
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "examples" / "shapes.png"
LABELS = ("circle", "square", "triangle")


def labels_xml(labels=LABELS, extra: str = "") -> str:
    return "".join(f'<Label value="{lab}"{extra}/>' for lab in labels)


def config_xml(outputs=("brush", "polygon", "rectangle"), labels=LABELS, smart=True) -> str:
    """A label config with smart keypoint + rectangle prompts and the requested outputs."""
    lab = labels_xml(labels)
    parts = ['<View>', '<Image name="image" value="$image"/>']
    if smart:
        parts.append(f'<KeyPointLabels name="kp" toName="image" smart="true">{lab}</KeyPointLabels>')
        parts.append(f'<RectangleLabels name="prompt_box" toName="image" smart="true" ovsam_skip="true">{lab}</RectangleLabels>')
    if "brush" in outputs:
        parts.append(f'<BrushLabels name="brush" toName="image">{lab}</BrushLabels>')
    if "polygon" in outputs:
        parts.append(f'<PolygonLabels name="poly" toName="image">{lab}</PolygonLabels>')
    if "rectangle" in outputs:
        parts.append(f'<RectangleLabels name="box" toName="image">{lab}</RectangleLabels>')
    parts.append('</View>')
    return "\n".join(parts)


def brush_rle_to_mask(rle, height: int, width: int) -> np.ndarray:
    """(H, W) bool of a brush RLE the backend wrote (the backend's own reader, ``regions.brush_mask``)."""
    from ovsam_plugins.label_studio.regions import brush_mask

    return brush_mask({"format": "rle", "rle": list(rle)}, width, height)


def control(cfg, name: str):
    """The control ``name`` of a parsed label config."""
    return next(c for c in cfg.controls if c.name == name)


def keypoint(x_px: float, y_px: float, w: int, h: int, label: str = "circle", positive: bool = True,
             rid: str = "kp1", from_name: str = "kp") -> Dict[str, Any]:
    """A smart keypoint region as the Label Studio editor sends it in ``context.result``."""
    return {"original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": 100.0 * x_px / w, "y": 100.0 * y_px / h, "width": 0.5, "keypointlabels": [label]},
            "is_positive": positive, "id": rid, "from_name": from_name, "to_name": "image",
            "type": "keypointlabels", "origin": "manual"}


def rectangle(box, w: int, h: int, label: str = "square", rid: str = "rect1", from_name: str = "prompt_box",
              rotation: float = 0.0) -> Dict[str, Any]:
    x0, y0, x1, y1 = box
    return {"original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"x": 100.0 * x0 / w, "y": 100.0 * y0 / h, "width": 100.0 * (x1 - x0) / w,
                      "height": 100.0 * (y1 - y0) / h, "rotation": rotation, "rectanglelabels": [label]},
            "id": rid, "from_name": from_name, "to_name": "image", "type": "rectanglelabels", "origin": "manual"}


def ls_task(task_id: int = 1, image: str = "/data/local-files/?d=shapes.png", annotations=(), predictions=(),
            **data) -> Dict[str, Any]:
    """A task as Label Studio 1.23 serialises it for ``/predict`` (recorded shape)."""
    return {"id": task_id, "data": {"image": image, **data}, "meta": {}, "created_at": "2026-11-25T10:00:00.000000Z",
            "updated_at": "2026-11-25T10:00:00.000000Z", "is_labeled": False, "overlap": 1, "inner_id": task_id,
            "total_annotations": len(annotations), "cancelled_annotations": 0, "total_predictions": len(predictions),
            "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 1,
            "updated_by": None, "file_upload": None, "comment_authors": [], "annotations": list(annotations),
            "predictions": list(predictions)}


def predict_body(tasks: List[Dict], config: str, context=None, project: str = "1.1795612460") -> Dict[str, Any]:
    """A ``POST /predict`` body as Label Studio 1.23 sends it."""
    return {"tasks": tasks, "project": project, "label_config": config,
            "params": {"login": None, "password": None, "context": context}}


def annotation(result, ann_id: int = 1, task_id: int = 1, updated="2026-11-25T11:00:00.000000Z") -> Dict[str, Any]:
    return {"id": ann_id, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": updated, "updated_at": updated, "lead_time": 3.2, "task": task_id, "project": 1,
            "completed_by": 1}


def webhook_body(action: str, task: Dict, ann: Dict, config: str, project_id: int = 1) -> Dict[str, Any]:
    """An ``ANNOTATION_CREATED/UPDATED`` webhook as Label Studio 1.23 posts it (abridged project)."""
    return {"action": action, "annotation": ann, "task": {k: v for k, v in task.items() if k not in ("annotations", "predictions")},
            "project": {"id": project_id, "title": "p", "label_config": config, "created_at": "2026-11-25T09:00:00Z"}}


def synthetic_scene(seed: int, size=(320, 240)):
    """An image with a red disc, a blue square and a yellow triangle at random places.

    Returns (rgb, [(label, (x0, y0, x1, y1)), ...]).
    """
    r = np.random.default_rng(seed)
    w, h = size
    bg = (r.random((6, 8, 3)) * 255).astype(np.uint8)
    im = Image.fromarray(bg).resize((w, h), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(im)
    objs = []
    for name, colour in (("circle", (200, 40, 40)), ("square", (40, 60, 190)), ("triangle", (240, 200, 40))):
        s = int(r.integers(40, 70))
        x, y = int(r.integers(0, w - s)), int(r.integers(0, h - s))
        if name == "circle":
            d.ellipse([x, y, x + s, y + s], fill=colour)
        elif name == "square":
            d.rectangle([x, y, x + s, y + s], fill=colour)
        else:
            d.polygon([(x + s / 2, y), (x, y + s), (x + s, y + s)], fill=colour)
        objs.append((name, (x, y, x + s, y + s)))
    return np.asarray(im), objs


def deep(x):
    return copy.deepcopy(x)


class FakeServer:
    """A tiny HTTP server on 127.0.0.1: ``routes[path] = (status, headers, body)``; records requests."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                route = outer.routes.get(self.path) or outer.routes.get(self.path.split("?")[0])
                if callable(route):
                    route = route(self)
                status, headers, payload = route or (404, {}, b"not found")
                self.send_response(status)
                chunked = headers.pop("chunked", False) if isinstance(headers, dict) else False
                for k, v in headers.items():
                    self.send_header(k, v)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(payload), 1000):
                        part = payload[i:i + 1000]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients hanging up mid-body (size-limit tests) are expected

        self.httpd = Quiet(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
