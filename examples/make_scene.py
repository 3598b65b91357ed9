"""Write ``examples/scene.png`` and its ground truth ``examples/scene.json`` (COCO instances).

The scene comes from the synthetic world ``ovsam-shapes`` was trained on
(:mod:`ovsam_core.synthetic`: base classes only, 4 objects, 384 x 288 px), drawn from a seed that
no training or evaluation split uses. Deterministic: rerunning rewrites identical files.

    python examples/make_scene.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ovsam_core.synthetic import CATEGORIES, synth_image

HERE = Path(__file__).resolve().parent
SEED = (2026, 248)


def main() -> None:
    base = [c for c in CATEGORIES if c.split == "base"]
    rng = np.random.default_rng(list(SEED))
    img, objects = synth_image(rng, base, image_size=384, min_objects=4, max_objects=4, aspect_choices=(1.333,))
    h, w = img.shape[:2]
    Image.fromarray(img).save(HERE / "scene.png", optimize=False, compress_level=9)
    anns = []
    for i, obj in enumerate(objects, 1):
        m = obj["mask"]
        ys, xs = np.nonzero(m)
        anns.append({"id": i, "image_id": 1, "category_id": obj["category"].id, "iscrowd": 0,
                     "segmentation": obj["segmentation"], "area": float(m.sum()),
                     "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()),
                              float(ys.max() + 1 - ys.min())]})
    doc = {"info": {"description": f"ovsam example scene (synthetic shapes, seed {list(SEED)})"},
           "images": [{"id": 1, "file_name": "scene.png", "height": h, "width": w}],
           "annotations": anns,
           "categories": [{"id": c.id, "name": c.name, "split": c.split} for c in CATEGORIES]}
    (HERE / "scene.json").write_text(json.dumps(doc, indent=1))
    for a in anns:
        x, y, bw, bh = a["bbox"]
        name = next(c.name for c in CATEGORIES if c.id == a["category_id"])
        print(f"{name:<18} box {x:.0f},{y:.0f},{x + bw:.0f},{y + bh:.0f}")


if __name__ == "__main__":
    main()
