"""Trained weights are written in the upstream file layouts and load through the registry."""
from __future__ import annotations

import logging

import pytest
import torch

from ovsam_core.config import OVSAM_TEST
from ovsam_core.training.export import export_weights, invert_rules
from ovsam_core.weights.loader import _seeded, load_model
from ovsam_core.weights.registry import (CLASSIFIER_LVIS_SPACE, CLIP2SAM_COCO, CLIP_OPENAI, FPN_SPACE, HEAD_SPACE,
                                         NECK_MODELS, NECK_SPACE, SAM_VIT_H, ModelSpec, get_model_spec, register_model,
                                         unregister_model)


@pytest.fixture
def tiny_specs():
    """The file sets of ovsam-coco-eval and ovsam-lvis, for the tiny architecture."""
    specs = [ModelSpec("tiny-coco-layout", "test", "test", (CLIP_OPENAI, SAM_VIT_H, NECK_MODELS, CLIP2SAM_COCO)),
             ModelSpec("tiny-lvis-layout", "test", "test",
                       (CLIP_OPENAI, SAM_VIT_H, NECK_SPACE, HEAD_SPACE, FPN_SPACE, CLASSIFIER_LVIS_SPACE))]
    for s in specs:
        register_model(s, overwrite=True)
    yield specs
    for s in specs:
        unregister_model(s.name)


def _differs_from_seed0(model):
    ref, _ = _seeded(OVSAM_TEST, 0)
    return any(not torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items()
               if v.is_floating_point())


@pytest.mark.parametrize("name", ["tiny-coco-layout", "tiny-lvis-layout"])
def test_every_file_round_trips_through_the_loader(tiny_specs, tmp_path, name, caplog):
    model, text = _seeded(OVSAM_TEST, 7)
    clf = torch.nn.functional.normalize(torch.randn(5, 2, 32), dim=-1)
    files = export_weights(model, name, tmp_path, roles=[f.role for f in get_model_spec(name).files],
                           text_encoder=text, classifier=clf)
    assert sorted(p.name for p in files) == sorted(f.filename for f in get_model_spec(name).files)
    with caplog.at_level(logging.WARNING):
        loaded = load_model(name, weights_dir=tmp_path, download=False, progress=False)
    assert "differs from the official release" in caplog.text
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    for k, v in text.state_dict().items():
        assert torch.equal(loaded.text_encoder.state_dict()[k], v), k
    if name == "tiny-lvis-layout":
        assert torch.equal(loaded.classifier, clf)


def test_trained_modules_select_the_files(tiny_specs, tmp_path):
    model, _ = _seeded(OVSAM_TEST, 3)
    assert [p.name for p in export_weights(model, "tiny-coco-layout", tmp_path, trained=["fpn_neck", "mask_decoder"])] \
        == ["clip2sam_coco_rn50x16.pth"]
    assert [p.name for p in export_weights(model, "tiny-coco-layout", tmp_path, trained=["neck"])] \
        == ["sam2clip_vith_rn50x16.pth"]
    assert sorted(p.name for p in export_weights(model, "tiny-lvis-layout", tmp_path,
                                                 trained=["fpn_neck", "mask_decoder"])) \
        == ["R50x16_fpn_lvis_norare_v3det.pth", "ovsam_R50x16_lvisnorare.pth"]
    sd = torch.load(tmp_path / "sam2clip_vith_rn50x16.pth", weights_only=True)["state_dict"]
    assert set(sd) == {"neck_student." + k for k in model.neck.state_dict()}
    fpn = torch.load(tmp_path / "R50x16_fpn_lvis_norare_v3det.pth", weights_only=True)["state_dict"]
    assert {k.split(".")[0] for k in fpn} == {"fpn_neck", "roi_conv"}
    inv = invert_rules(CLIP_OPENAI, model.state_dict(), {})
    assert "visual.conv1.weight" in inv and "visual.attnpool.c_proj.weight" in inv


def test_fused_export_for_a_model_without_files(tmp_path):
    model, text = _seeded(OVSAM_TEST, 11)
    (p,) = export_weights(model, "ovsam-test", tmp_path, trained=["mask_decoder"], text_encoder=text)
    assert p.name == "ovsam-test.safetensors"
    loaded = load_model("ovsam-test", weights_dir=tmp_path)
    assert _differs_from_seed0(loaded.model)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
