"""Unit tests of the model pieces the golden vectors do not exercise."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ovsam_core import OVSAM_TEST, load_model
from ovsam_core.modeling import assign_levels, fuse_logits, mask_to_box, multilevel_roi_align
from ovsam_core.modeling.ovsam_head import classify


def test_import_pulls_no_host_package():
    code = ("import sys, ovsam_core, ovsam_core.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "{'napari','qtpy','PyQt5','PyQt6','PySide2','PySide6','fiftyone','flask','label_studio_sdk',"
            "'label_studio_ml','magicgui','gunicorn','vispy'}]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mask_to_box_small_and_empty():
    m = torch.zeros(4, 8, 8, dtype=torch.bool)
    m[0, 3, 5] = True                       # one pixel -> [5, 3, 6, 4]
    m[1, 1:3, 2:7] = True                   # a bar
    m[2, 0, 0] = m[2, 7, 7] = True          # two corners -> whole grid
    boxes = mask_to_box(m)
    assert boxes.tolist() == [[5, 3, 6, 4], [2, 1, 7, 3], [0, 0, 8, 8], [0, 0, 0, 0]]
    assert boxes.dtype == torch.float32


@pytest.mark.parametrize("side,level", [(4, 0), (111.9, 0), (112, 1), (223.9, 1), (224, 2), (447, 2),
                                        (448, 3), (1024, 3), (0, 0)])
def test_fpn_level_rule(side, level):
    box = torch.tensor([[10.0, 20.0, 10.0 + side, 20.0 + side]])
    assert assign_levels(box, 4).item() == level


def test_multilevel_roi_align_uses_the_assigned_level():
    feats = [torch.full((1, 2, 1024 // s, 1024 // s), float(i)) for i, s in enumerate((4, 8, 16, 32))]
    boxes = torch.tensor([[0, 0, 50, 50], [0, 0, 150, 150], [0, 0, 250, 250], [0, 0, 500, 500.0]])
    out = multilevel_roi_align(feats, boxes, 7, (4, 8, 16, 32))
    assert out.shape == (4, 2, 7, 7)
    assert [out[i].mean().item() for i in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert multilevel_roi_align(feats, torch.zeros(0, 4), 7, (4, 8, 16, 32)).shape == (0, 2, 7, 7)


def test_classify_background_zero_and_max_over_synonyms():
    cls = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    x = cls[1, 1][None] * 5
    logits = classify(x, cls)
    assert logits.shape == (1, 4) and logits[0, -1].item() == 0.0
    assert logits.argmax().item() == 1
    assert abs(logits[0, 1].item() - 100.00296) < 1e-3


def test_empty_mask_gives_zero_logits_and_fusion_falls_back_to_head():
    cls = torch.nn.functional.normalize(torch.randn(3, 1, 8), dim=-1)
    logits = classify(torch.zeros(1, 8), cls)
    assert torch.equal(logits, torch.zeros(1, 4))
    q, c = torch.randn(2, 4), torch.randn(2, 4)
    fused = fuse_logits(q, c, torch.tensor([True, False, True]), torch.tensor([False, True]))
    assert torch.allclose(fused[0], torch.log_softmax(q[0], -1), atol=1e-6)
    lq, lc = torch.log_softmax(q[1], -1), torch.log_softmax(c[1], -1)
    exp = torch.stack([0.9 * lq[0] + 0.1 * lc[0], 0.1 * lq[1] + 0.9 * lc[1], 0.9 * lq[2] + 0.1 * lc[2],
                       0.9 * lq[3] + 0.1 * lc[3]])
    assert torch.allclose(fused[1], exp, atol=1e-5)
    known = torch.tensor([True, False, True])
    assert fuse_logits(q, c, torch.tensor([True, False, True]), torch.tensor([True, True]), known)[:, 1].eq(-1000).all()


@pytest.fixture(scope="module")
def tiny():
    return load_model("ovsam-test").model


def test_decode_shapes_and_mixed_prompts(tiny):
    x = torch.randn(1, 3, OVSAM_TEST.image_size, OVSAM_TEST.image_size)
    f = tiny.extract_features(x)
    pts = torch.tensor([[[30.0, 40.0], [100.0, 120.0]]] * 3)
    lab = torch.tensor([[1, 0]] * 3)
    boxes = torch.tensor([[10.0, 10.0, 90.0, 90.0]] * 3)
    out = tiny.decode(f, pts, lab, boxes)
    assert out.mask_logits.shape == (3, 1, 64, 64) and out.roi_embedding.shape == (3, OVSAM_TEST.clip_embed_dim)
    # a negative point changes the result; prompts are independent within a batch
    pos = tiny.decode(f, pts[:1], torch.ones(1, 2), boxes[:1])
    assert not torch.equal(pos.mask_logits, out.mask_logits[:1])
    assert torch.allclose(out.mask_logits[0], out.mask_logits[2], atol=1e-5)
    with pytest.raises(ValueError, match="at least one point or a box"):
        tiny.decode(f)


def test_packages_listed_in_pyproject_cover_the_tree():
    """Every folder with an __init__.py ships (ovsam_core/*, plugins/* as ovsam_plugins)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for init in list(root.glob("ovsam_core/**/__init__.py")) + list(root.glob("plugins/**/__init__.py")):
        parts = init.parent.relative_to(root).parts
        found.add(".".join(("ovsam_plugins",) + parts[1:] if parts[0] == "plugins" else parts))
    assert found == listed


def test_plugins_importable_as_ovsam_plugins():
    import ovsam_plugins.fiftyone  # noqa: F401
    import ovsam_plugins.label_studio  # noqa: F401
    import ovsam_plugins.napari  # noqa: F401


def test_static_roi_align_equals_per_level():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(1, 3, 1024 // s, 1024 // s, generator=g) for s in (4, 8, 16, 32)]
    boxes = torch.tensor([[5, 7, 60, 90], [0, 0, 150, 150], [10, 20, 300, 250], [0, 0, 1000, 900.0], [3, 3, 3, 3]])
    a = multilevel_roi_align(feats, boxes, 7, (4, 8, 16, 32))
    b = multilevel_roi_align(feats, boxes, 7, (4, 8, 16, 32), static=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("n", [1, 5])
def test_shared_decoder_equals_module_decoder_tiny(tiny, n):
    """The inference decoder (image side shared, attention reassociated) = SAM's modules."""
    torch.manual_seed(n)
    f = tiny.extract_features(torch.randn(1, 3, OVSAM_TEST.image_size, OVSAM_TEST.image_size))
    s = OVSAM_TEST.image_size
    pts = torch.rand(n, 3, 2) * s
    lab = (torch.rand(n, 3) > 0.3).float()
    xy = torch.rand(n, 2) * s * 0.7
    boxes = torch.cat([xy, xy + torch.rand(n, 2) * s * 0.3 + 4], 1)
    for kw in ({"points": pts, "point_labels": lab}, {"boxes": boxes}, {"points": pts, "point_labels": lab, "boxes": boxes}):
        ref = tiny.decode(f, exact=True, **kw)
        fast = tiny.decode(f, **kw)
        scale = ref.mask_logits.abs().max().item()
        assert (fast.mask_logits - ref.mask_logits).abs().max().item() <= 1e-5 * max(scale, 1.0)
        assert torch.allclose(fast.roi_embedding, ref.roi_embedding, atol=1e-5, rtol=1e-4)


def test_shared_decoder_equals_module_decoder_real_size():
    """Real-size head (8 heads of 16 channels, 64x64 tokens), across the internal chunking."""
    from segment_anything.modeling.prompt_encoder import PromptEncoder

    from ovsam_core.config import OVSAM_RN50X16 as cfg
    from ovsam_core.modeling.fast_decoder import CHUNK, predict_masks_shared
    from ovsam_core.modeling.ovsam_head import OVSAMHead

    torch.manual_seed(0)
    head = OVSAMHead(cfg).eval()
    g = cfg.embedding_size
    pe = PromptEncoder(embed_dim=cfg.prompt_dim, image_embedding_size=(g, g),
                       input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16)
    emb = torch.randn(1, cfg.prompt_dim, g, g)
    n = 2 * CHUNK + 1
    xy = torch.rand(n, 2) * 800
    boxes = torch.cat([xy, xy + torch.rand(n, 2) * 200 + 8], 1)
    with torch.inference_mode():
        sparse = pe._embed_boxes(boxes)
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, g, g)
        ref = head.predict_masks(emb, pe.get_dense_pe(), sparse, dense)
        fast = predict_masks_shared(head, emb, pe.get_dense_pe(), sparse, dense)
    assert fast.shape == ref.shape == (n, 1, 4 * g, 4 * g)
    err = (fast - ref).abs().max().item()
    assert err <= 1e-5 * ref.abs().max().item(), err


@pytest.mark.parametrize("n", [1, 3])
def test_attnpool_first_token_equals_open_clip_pool(n):
    """The frozen-CLIP branch pools only token 0; real-size RN50x16 pool (12x12, 48 heads)."""
    from open_clip.modified_resnet import AttentionPool2d

    from ovsam_core.modeling.clip_pool import attnpool_first_token

    torch.manual_seed(n)
    pool = AttentionPool2d(12, 3072, 48, 768).eval()
    x = torch.randn(n, 3072, 12, 12) * 3
    with torch.inference_mode():
        ref, fast = pool(x), attnpool_first_token(pool, x)
    assert fast.shape == ref.shape == (n, 768)
    assert (fast - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


def test_packed_classifier_drops_padding_and_classifies_identically():
    from ovsam_core.modeling.ovsam_head import PackedClassifier

    torch.manual_seed(0)
    counts = [1, 3, 2, 1]
    cls = torch.nn.functional.normalize(torch.randn(4, 3, 16), dim=-1)
    for c, k in enumerate(counts):
        cls[c, k:] = cls[c, 0]  # padding = copies of the first synonym (the classifier recipe)
    packed = PackedClassifier.pack(cls)
    assert packed.prototypes.shape == (sum(counts), 16) and packed.num_classes == 4
    assert packed.owner.tolist() == [0, 1, 1, 1, 2, 2, 3]
    x = torch.randn(5, 16) * 3
    ref, got = classify(x, cls), classify(x, packed)
    assert got.shape == (5, 5) and torch.equal(got[:, -1], torch.zeros(5))
    assert torch.allclose(got, ref, atol=1e-5)
    # a query equal to a non-first synonym wins its class through the max
    assert classify(cls[1, 2][None], packed)[0, :-1].argmax().item() == 1
