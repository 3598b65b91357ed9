"""ONNX export of the per-prompt decoder, checked against the PyTorch path on the tiny model.

The ONNX Runtime tests skip cleanly where onnx/onnxruntime are not installed
(``pip install 'ovsam[onnx]'``); the pure-PyTorch checks of the wrapper always run.
"""
from __future__ import annotations

import copy
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ovsam_core import load_model
from ovsam_core.export import (OnnxDecoder, decoder_input_names, export_decoder_onnx,
                               prompts_to_points)
from ovsam_core.modeling import ImageFeatures, OVSAM, mask_to_box, multilevel_roi_align

MASK_ATOL = 1e-4
LOGIT_ATOL = 1e-3

#: Prompt sets in ``OVSAM.decode`` form (model frame of the tiny model: 256 px).
CASES: Dict[str, Dict[str, torch.Tensor]] = {
    "1pt": dict(points=torch.tensor([[[100.0, 120.0]]])),
    "3pt_neg": dict(points=torch.tensor([[[100.0, 120.0], [50.0, 60.0], [200.0, 30.0]]]),
                    point_labels=torch.tensor([[1.0, 0.0, 1.0]])),
    "box": dict(boxes=torch.tensor([[30.0, 40.0, 200.0, 180.0]])),
    "box_pts": dict(points=torch.tensor([[[100.0, 120.0], [50.0, 60.0]]]),
                    point_labels=torch.tensor([[1.0, 0.0]]),
                    boxes=torch.tensor([[30.0, 40.0, 200.0, 180.0]])),
    "n5_pts": dict(points=torch.rand(5, 2, 2, generator=torch.Generator().manual_seed(1)) * 256),
    "n4_boxes": dict(boxes=torch.tensor([[0.0, 0.0, 255.0, 255.0], [10.0, 10.0, 40.0, 30.0],
                                         [100.0, 5.0, 250.0, 90.0], [3.5, 7.25, 128.0, 200.5]])),
}


def _classifier(c: int, p: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(c, p, dim, generator=g), dim=-1)


@pytest.fixture(scope="module")
def tiny() -> OVSAM:
    return load_model("ovsam-test", with_text=False).model.eval()


@pytest.fixture(scope="module")
def feats(tiny: OVSAM) -> ImageFeatures:
    x = torch.randn(1, 3, tiny.cfg.image_size, tiny.cfg.image_size, generator=torch.Generator().manual_seed(0))
    return tiny.extract_features(x)


# ---------------------------------------------------------------------- pure PyTorch
def test_import_does_not_need_onnx():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import ovsam_core.export as e\n"
            "from ovsam_core import load_model\n"
            "m = load_model('ovsam-test', with_text=False).model\n"
            "try:\n    e.export_decoder_onnx(m, 'unused.onnx')\n"
            "except ImportError as err:\n    print('HINT', err)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install 'ovsam[onnx]'" in r.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_point_convention_is_embed_prompts(tiny: OVSAM, case: str):
    """Points + (padding point | box corners 2/3) embed bit-identically to ``embed_prompts``."""
    kw = CASES[case]
    dec = OnnxDecoder(tiny)
    with torch.no_grad():
        ref, _ = tiny.embed_prompts(**kw)
        got = dec.embed_points(*prompts_to_points(**kw))
    # bit-identical with Intel MKL; on AMD (AVX-512) the box corners' products round 1 ulp apart
    torch.testing.assert_close(got, ref, rtol=0, atol=4e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrapper_matches_decode_in_pytorch(tiny: OVSAM, feats: ImageFeatures, case: str):
    kw = CASES[case]
    cls = _classifier(4, 2, tiny.cfg.clip_embed_dim, 0)
    dec = OnnxDecoder(tiny)
    with torch.no_grad():
        out = tiny.decode(feats, exact=True, **kw)
        masks, logits, boxes = dec(feats.embedding, *feats.fpn, *prompts_to_points(**kw), cls)
    # equal up to float rounding (bit-identical on Intel MKL, ~1 ulp apart on AMD AVX-512)
    torch.testing.assert_close(masks, out.mask_logits, rtol=0, atol=1e-4)
    assert torch.equal(boxes, out.roi_boxes)
    torch.testing.assert_close(logits, tiny.head_logits(out, cls), rtol=0, atol=1e-3)


def test_mode_and_argument_checks(tiny: OVSAM, tmp_path: Path):
    with pytest.raises(ValueError):
        OnnxDecoder(tiny, "nope")
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="opset"):
        export_decoder_onnx(tiny, tmp_path / "a.onnx", opset=15)
    with pytest.raises(ValueError, match="opset"):
        export_decoder_onnx(tiny, tmp_path / "a.onnx", opset=17, dynamo=True)
    with pytest.raises(ValueError, match="num_classes"):
        export_decoder_onnx(tiny, tmp_path / "a.onnx", num_classes_dynamic=False)


# ---------------------------------------------------------------------- ONNX Runtime
def _session(path: Path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions(tiny: OVSAM, tmp_path_factory) -> Dict[str, object]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("onnx")
    return {mode: _session(export_decoder_onnx(tiny, d / f"{mode}.onnx", mode=mode))
            for mode in ("head", "fused")}


def _run(sess, mode: str, feats: ImageFeatures, coords: torch.Tensor, labels: torch.Tensor,
         cls: torch.Tensor, base: Optional[torch.Tensor] = None,
         clip_boxes: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
    values = [feats.embedding, *feats.fpn, coords, labels, cls]
    if mode == "fused":
        values += [feats.c5, base, clip_boxes]
    feed = {name: v.detach().numpy() for name, v in zip(decoder_input_names(mode), values)}
    return [torch.from_numpy(a) for a in sess.run(None, feed)]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("num_classes,num_protos", [(3, 2), (17, 4)])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["head", "fused"])
def test_onnx_matches_pytorch(tiny, feats, sessions, mode, case, num_classes, num_protos):
    kw = CASES[case]
    cls = _classifier(num_classes, num_protos, tiny.cfg.clip_embed_dim, num_classes)
    base = (torch.arange(num_classes) % 3 != 0).to(torch.float32)
    out = tiny.decode(feats, exact=True, **kw)
    n = out.mask_logits.shape[0]
    clip_boxes = None
    if mode == "head":
        ref = tiny.head_logits(out, cls)
    else:
        # The prompt box when there is one (including boxes beyond the frame, as with
        # upstream's original-scale GT boxes, quirk Q1), else "-1" = the mask's box.
        clip_boxes = kw["boxes"] * 1.5 if "boxes" in kw else torch.full((n, 4), -1.0)
        ref_boxes = kw["boxes"] * 1.5 if "boxes" in kw else out.roi_boxes
        ref = tiny.fused_logits(feats, out, cls, ref_boxes, base.bool())
    masks, logits, boxes = _run(sessions[mode], mode, feats, *prompts_to_points(**kw), cls, base, clip_boxes)
    assert masks.shape == out.mask_logits.shape and logits.shape == (n, num_classes + 1)
    assert _max_diff(masks, out.mask_logits) <= MASK_ATOL
    assert _max_diff(logits, ref) <= LOGIT_ATOL
    assert torch.equal(boxes, out.roi_boxes)


def test_graph_uses_aligned_roialign(tiny, tmp_path):
    onnx = pytest.importorskip("onnx")
    path = export_decoder_onnx(tiny, tmp_path / "fused.onnx", mode="fused")
    nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type == "RoiAlign"]
    assert len(nodes) == 5  # 4 FPN levels + the CLIP branch on C5
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["coordinate_transformation_mode"] == b"half_pixel"
        assert attrs["sampling_ratio"] == 0


def test_static_num_classes(tiny, feats, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    sess = _session(export_decoder_onnx(tiny, tmp_path / "c4.onnx", num_classes_dynamic=False, num_classes=4))
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    assert shapes["classifier"][0] == 4 and shapes["point_coords"] == ["N", "K", 2]
    cls = _classifier(4, 3, tiny.cfg.clip_embed_dim, 5)
    kw = CASES["3pt_neg"]
    _, logits, _ = _run(sess, "head", feats, *prompts_to_points(**kw), cls)
    assert _max_diff(logits, tiny.head_logits(tiny.decode(feats, exact=True, **kw), cls)) <= LOGIT_ATOL


def test_empty_mask_does_not_crash(tiny, feats, tmp_path):
    """A mask decoder whose logits are exactly 0 (sigmoid 0.5, not > 0.5) predicts empty masks."""
    pytest.importorskip("onnx")
    m = copy.deepcopy(tiny)
    last = m.mask_decoder.mask_decoder.output_hypernetworks_mlps[0].layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    kw = CASES["n5_pts"]
    cls = _classifier(6, 2, m.cfg.clip_embed_dim, 6)
    base = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    out = m.decode(feats, exact=True, **kw)
    assert torch.equal(out.roi_boxes, torch.zeros(5, 4))
    for mode in ("head", "fused"):
        sess = _session(export_decoder_onnx(m, tmp_path / f"{mode}.onnx", mode=mode))
        clip_boxes = torch.full((5, 4), -1.0)
        masks, logits, boxes = _run(sess, mode, feats, *prompts_to_points(**kw), cls, base, clip_boxes)
        assert torch.equal(boxes, torch.zeros(5, 4))
        assert torch.isfinite(logits).all()
        if mode == "head":
            assert torch.equal(logits, torch.zeros(5, 7))  # zero RoI feature -> all logits 0
        else:  # invalid mask -> the fused score falls back to log q = log(1 / (C + 1))
            ref = m.fused_logits(feats, out, cls, out.roi_boxes, base.bool())
            assert _max_diff(logits, ref) <= 1e-5
            assert _max_diff(logits, torch.full((5, 7), -torch.log(torch.tensor(7.0)).item())) <= 1e-5


class _RoiOnly(nn.Module):
    """The export-friendly multi-level RoIAlign and mask-to-box, alone (component check)."""

    def __init__(self, dec: OnnxDecoder) -> None:
        super().__init__()
        self.dec = dec

    def forward(self, p2, p3, p4, p5, boxes, mask_logits):
        head = self.dec.head
        pooled = multilevel_roi_align([p2, p3, p4, p5], boxes, head.roi_size, (4, 8, 16, 32), head.finest_scale,
                                      static=True)
        return pooled, mask_to_box(torch.sigmoid(mask_logits) > 0.5)


def test_multilevel_roi_align_and_mask_to_box_components(tiny, tmp_path):
    """Every FPN level and its boundaries (in a 1024 frame), small and empty masks."""
    pytest.importorskip("onnx")
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(1, 3, 1024 // s, 1024 // s, generator=g) for s in (4, 8, 16, 32)]
    sides = [0.0, 4.0, 50.0, 111.9, 112.0, 150.0, 223.9, 224.0, 300.0, 447.0, 448.0, 1000.0]
    boxes = torch.tensor([[10.0, 20.0, 10.0 + s, 20.0 + s] for s in sides])
    boxes = torch.cat([boxes, torch.tensor([[900.0, 900.0, 1100.0, 1030.0], [-20.0, -8.0, 60.0, 70.0]])])
    masks = torch.full((4, 16, 16), -3.0)
    masks[0, 3, 5] = 2.0
    masks[1, 1:3, 2:7] = 0.5
    masks[2, 0, 0] = masks[2, 15, 15] = 1.0
    dec = OnnxDecoder(tiny)
    path = tmp_path / "roi.onnx"
    names = ["p2", "p3", "p4", "p5", "boxes", "mask_logits"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_RoiOnly(dec), (*feats, boxes, masks), str(path), input_names=names,
                          output_names=["pooled", "mask_boxes"], opset_version=17, dynamo=False,
                          dynamic_axes={"boxes": {0: "N"}, "mask_logits": {0: "M"}})
    sess = _session(path)
    pooled, mboxes = sess.run(None, {k: v.numpy() for k, v in zip(names, (*feats, boxes, masks))})
    ref = multilevel_roi_align(feats, boxes, tiny.cfg.roi_size, (4, 8, 16, 32), tiny.cfg.finest_scale)
    assert _max_diff(torch.from_numpy(pooled), ref) <= 1e-5
    assert torch.from_numpy(mboxes).tolist() == [[5, 3, 6, 4], [2, 1, 7, 3], [0, 0, 16, 16], [0, 0, 0, 0]]


def test_dynamo_exporter_matches(tiny, feats, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    sess = _session(export_decoder_onnx(tiny, tmp_path / "d.onnx", dynamo=True, opset=18))
    cls = _classifier(9, 3, tiny.cfg.clip_embed_dim, 9)
    for case in ("box_pts", "n5_pts"):
        kw = CASES[case]
        out = tiny.decode(feats, exact=True, **kw)
        masks, logits, boxes = _run(sess, "head", feats, *prompts_to_points(**kw), cls)
        assert _max_diff(masks, out.mask_logits) <= MASK_ATOL
        assert _max_diff(logits, tiny.head_logits(out, cls)) <= LOGIT_ATOL
        assert torch.equal(boxes, out.roi_boxes)
