"""Building the model for training: SAM decoder init, upstream re-init, freezing, BN calibration."""
from __future__ import annotations

import torch

from ovsam_core.config import OVSAM_TEST
from ovsam_core.training.modelinit import (UNUSED_IN_TRAINING, calibrate_batchnorm, freeze, load_sam_decoder,
                                           neck_pos_embed_from_prompt_encoder, reinit_clip2sam)
from ovsam_core.training.plot import _plot_pil
from ovsam_core.weights.loader import _seeded


def test_decoder_initialised_from_a_sam_checkpoint(tmp_path):
    from ovsam_core.evaluation.baselines import build_sam

    sam = build_sam("tiny", image_size=256, seed=3)                 # SAM classes, 32 wide, 4 mask tokens + IoU head
    torch.save({"model": sam.state_dict()}, tmp_path / "sam.pth")
    model, _ = _seeded(OVSAM_TEST, 0)
    load_sam_decoder(model, str(tmp_path / "sam.pth"))
    dec = model.mask_decoder.mask_decoder
    assert torch.equal(dec.mask_tokens.weight, sam.mask_decoder.mask_tokens.weight[:1])
    assert torch.equal(dec.output_hypernetworks_mlps[0].layers[2].weight,
                       sam.mask_decoder.output_hypernetworks_mlps[0].layers[2].weight)
    assert torch.equal(dec.transformer.layers[1].mlp.lin1.weight,
                       sam.mask_decoder.transformer.layers[1].mlp.lin1.weight)
    assert torch.equal(model.pe.point_embeddings[2].weight, sam.prompt_encoder.point_embeddings[2].weight)


def test_reinit_freeze_and_train_mode():
    model, _ = _seeded(OVSAM_TEST, 0)
    before = model.mask_decoder.label_token.weight.clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        reinit_clip2sam(model)
    assert all(float(c.conv.bias.abs().max()) == 0 for c in model.fpn_neck.lateral_convs)
    assert not torch.equal(before, model.mask_decoder.label_token.weight)
    names = freeze(model, ["backbone", "fpn_neck", "mask_decoder"])
    assert any(n.startswith("backbone.layer1.") for n in names)
    assert not any(n.startswith(UNUSED_IN_TRAINING) for n in names)       # attention pool stays frozen
    assert not any(n.startswith(("neck.", "pe.")) for n in names)


def test_batchnorm_calibration_restores_feature_scale_and_pos_embed_copy():
    model, _ = _seeded(OVSAM_TEST, 0)
    model.eval()
    g = torch.Generator().manual_seed(0)
    images = [torch.randn(3, 256, 256, generator=g) for _ in range(4)]
    with torch.no_grad():
        c5_before = model.backbone(images[0][None])[-1].std()
    assert calibrate_batchnorm(model.backbone, images) > 0
    assert not model.backbone.training                                      # mode restored
    assert all(m.momentum == 0.1 for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        c5_after = model.backbone(images[0][None])[-1].std()
    assert c5_after > 10 * c5_before                                       # random BN stats shrink features
    neck_pos_embed_from_prompt_encoder(model)
    assert torch.equal(model.neck.pos_embed, model.pe.get_dense_pe().permute(0, 2, 3, 1))


def test_loss_plot_without_matplotlib(tmp_path):
    out = _plot_pil({"loss": [(1, 3.0), (2, 2.0), (3, 1.5)], "loss_cls": [(1, 1.0)]}, tmp_path / "p.png")
    from PIL import Image
    assert Image.open(out).size == (700, 400)
