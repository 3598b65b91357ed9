"""Fast unit tests of the text side: tokenizer, tiny random text encoder, classifier recipe,
shipped vocabularies and classifier files."""
from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

from ovsam_core.config import OVSAM_TEST
from ovsam_core.text import (VILD_TEMPLATES, TextEncoder, build_classifier, class_prompts,
                             coco_classes, embed_prompts, get_vocabulary, imagenet21k_classes,
                             load_classifier_file, lvis_classes, save_classifier, split_label)


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(OVSAM_TEST).eval()


# --------------------------------------------------------------------------- split_label
@pytest.mark.parametrize("name, expected", [
    ("tape_(sticky_cloth_or_paper)", ["tape (sticky cloth", "paper)"]),
    ("bat_(animal)", ["bat (animal)"]),
    ("aerosol_can", ["aerosol can"]),
    ("tv remote,remote control", ["tv remote", "remote control"]),
    ("read/write_head,head", ["read", "write head", "head"]),
    ("American_football", ["american football"]),
    ("  Orange Fruit ", ["orange fruit"]),
    ("a,,b", ["a", "b"]),
])
def test_split_label(name, expected):
    assert split_label(name) == expected


def test_templates_exact():
    assert len(VILD_TEMPLATES) == 14
    assert VILD_TEMPLATES[0] == "a photo of a {}."
    assert VILD_TEMPLATES[1] == "This is a photo of a {}"          # no final period
    assert sum(t.endswith(".") for t in VILD_TEMPLATES) == 10
    assert class_prompts("bat_(animal)")[0][2] == "There is a bat (animal) in the scene"


# --------------------------------------------------------------------------- encoder
def test_state_dict_keys_match_open_clip(enc):
    ref = open_clip.create_model("RN50x16-quickgelu", pretrained=None).state_dict()
    ref = {k: v.shape for k, v in ref.items() if not k.startswith("visual.") and k != "logit_scale"}
    from ovsam_core.config import OVSAM_RN50X16
    big = {k: v.shape for k, v in TextEncoder(OVSAM_RN50X16).state_dict().items()}
    assert big == ref
    assert "attn_mask" not in enc.state_dict()
    assert isinstance(enc.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)


def test_tokenize_matches_open_clip(enc):
    texts = ["a photo of a Cat.", "There is a  large tape (sticky cloth in the scene."]
    tok = enc.tokenize(texts)
    assert tok.dtype == torch.long and tok.shape == (2, 77)
    assert torch.equal(tok, open_clip.tokenize(texts))
    assert torch.equal(enc.tokenize("x"), enc.tokenize(["x"]))


def test_encode_matches_open_clip_text_transformer(enc):
    # open_clip's standalone TextTransformer has the same top-level key names as CLIP's text path.
    cfg = OVSAM_TEST
    ref_model = open_clip.transformer.TextTransformer(
        context_length=cfg.context_length, vocab_size=cfg.vocab_size, width=cfg.text_width,
        heads=cfg.text_heads, layers=cfg.text_layers, output_dim=cfg.clip_embed_dim,
        act_layer=open_clip.transformer.QuickGELU).eval()
    ref_model.load_state_dict(enc.state_dict(), strict=True)
    tok = enc.tokenize(["a photo of a dog.", "hello", "There is a large dog in the scene."])
    with torch.no_grad():
        out = enc.encode(tok, truncate=False)
        ref = ref_model(tok)
    # same function; products run in fixed shapes (ovsam_core.text.fixed_shape), so float rounding differs
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert out.shape == (3, cfg.clip_embed_dim)


def test_truncation_is_bit_identical(enc):
    tok = enc.tokenize(["a", "a photo of a small aerosol can.", "There is a medium dog in the scene."])
    with torch.no_grad():
        full = enc.encode(tok, truncate=False)
        trunc = enc.encode(tok, truncate=True)
        single = torch.cat([enc.encode(tok[i:i + 1], truncate=True) for i in range(3)])
        single_full = torch.cat([enc.encode(tok[i:i + 1], truncate=False) for i in range(3)])
    assert torch.equal(trunc, full)
    assert torch.equal(single, single_full)
    assert torch.equal(single, full)  # nor does a prompt's result depend on its batch


@pytest.mark.parametrize("batch", [1, 7, 16])
def test_truncation_is_bit_identical_real_size(batch):
    """Real-size RN50x16 tower (width 768, 12 layers), random weights, LVIS prompts."""
    from ovsam_core.config import OVSAM_RN50X16
    from ovsam_core.text import lvis_classes
    from ovsam_core.text.classifier import class_prompts

    torch.manual_seed(batch)
    big = TextEncoder(OVSAM_RN50X16).eval()
    names = lvis_classes().names[::97]
    prompts = [p for n in names for syn in class_prompts(n) for p in syn][batch::11][:batch]
    tok = big.tokenize(prompts)
    with torch.no_grad():
        full = big.encode(tok, truncate=False)
        trunc = big.encode(tok, truncate=True)
        single = big.encode(tok[-1:], truncate=True)
    assert int(tok.argmax(-1).max()) + 1 < 40  # the truncation did cut the context
    assert torch.equal(trunc, full)
    assert torch.equal(single, full[-1:])  # independent of the batch


def test_encode_rejects_bad_shape(enc):
    with pytest.raises(ValueError, match="tokenize"):
        enc.encode(torch.zeros(2, 10, dtype=torch.long))


def test_encode_texts_batches(enc):
    texts = ["one", "two words", "three little words"]
    a = enc.encode_texts(texts, batch_size=2, truncate=False)
    b = enc.encode_texts(texts, truncate=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert enc.encode_texts([]).shape == (0, OVSAM_TEST.clip_embed_dim)


# --------------------------------------------------------------------------- classifier
def test_build_classifier_recipe_and_padding(enc):
    names = ["aerosol_can", "tape_(sticky_cloth_or_paper)", "tv remote,remote control,clicker"]
    cls = build_classifier(enc, names, batch_size=5, progress=False, truncate=False)
    assert cls.shape == (3, 3, OVSAM_TEST.clip_embed_dim) and cls.dtype == torch.float32
    torch.testing.assert_close(cls.norm(dim=-1), torch.ones(3, 3))
    # padding repeats the first synonym
    assert torch.equal(cls[0, 1], cls[0, 0]) and torch.equal(cls[0, 2], cls[0, 0])
    assert torch.equal(cls[1, 2], cls[1, 0]) and not torch.equal(cls[1, 1], cls[1, 0])
    # recipe by hand for one synonym
    feats = enc.encode_texts([t.format("paper)") for t in VILD_TEMPLATES], truncate=False)
    proto = F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1)
    torch.testing.assert_close(cls[1, 1], proto, rtol=0, atol=1e-6)


def test_build_classifier_batching_and_truncation_agree(enc):
    names = ["cat", "dog,puppy", "air_conditioner"]
    ref = build_classifier(enc, names, batch_size=1, progress=False, truncate=False)
    fast = build_classifier(enc, names, batch_size=7, progress=False, truncate=True)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-5)


def test_build_classifier_input_errors(enc):
    with pytest.raises(ValueError, match="list of names"):
        build_classifier(enc, "cat", progress=False)
    with pytest.raises(ValueError, match="no synonym"):
        build_classifier(enc, ["cat", " , "], progress=False)
    with pytest.raises(ValueError, match=r"\{\}"):
        build_classifier(enc, ["cat"], templates=["a photo"], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        embed_prompts(enc, ["a"], batch_size=0, progress=False)


# --------------------------------------------------------------------------- vocabularies
def test_lvis_vocabulary():
    v = lvis_classes()
    assert len(v) == 1203 and len(v.frequency) == 1203
    assert int(v.novel_mask().sum()) == 337 and int(v.base_mask().sum()) == 866
    assert v.names[0] == "aerosol_can" and v.ids[0] == "1"
    assert "speaker_(stereo_equipment)" in v.names and "speaker_(stero_equipment)" not in v.names
    syn = [split_label(n) for n in v.names]
    assert sum(map(len, syn)) == 1204 and max(map(len, syn)) == 2
    assert get_vocabulary("LVIS") is v


def test_coco_vocabulary():
    v = coco_classes()
    assert len(v) == 80
    assert int(v.base_mask().sum()) == 48 and int(v.novel_mask().sum()) == 17
    assert v.split.count("other") == 15
    syn = [split_label(n) for n in v.names]
    assert sum(map(len, syn)) == 173 and max(map(len, syn)) == 17
    assert v.display_names()[0] == "person"


def test_imagenet21k_vocabulary():
    v = imagenet21k_classes()
    assert len(v) == 19167 and v.ids[0].startswith("n")
    assert v.split is None
    with pytest.raises(ValueError, match="split"):
        v.novel_mask()
    with pytest.raises(ValueError, match="unknown vocabulary"):
        get_vocabulary("objects365")


# --------------------------------------------------------------------------- classifier files
def test_classifier_file_roundtrip(tmp_path, enc):
    cls = build_classifier(enc, ["cat", "dog,puppy"], progress=False)
    save_classifier(cls, tmp_path / "c.pth")
    assert torch.equal(load_classifier_file(tmp_path / "c.pth"), cls)


@pytest.mark.parametrize("obj, match", [
    ({"state_dict": torch.zeros(1)}, "bare tensor"),
    (F.normalize(torch.randn(4, 8), dim=-1), "3-D float"),
    (torch.ones(2, 1, 4, dtype=torch.long), "3-D float"),
    (torch.randn(3, 2, 8) * 5, "L2-normalised"),
])
def test_load_classifier_file_errors(tmp_path, obj, match):
    path = tmp_path / "bad.pth"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=match):
        load_classifier_file(path)
