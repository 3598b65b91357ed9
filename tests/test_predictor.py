"""Predictor: encode once / decode many, frames, batching, vocabularies, caches."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from ovsam_core.embedding import EmbeddingLRU, EmbeddingMismatchError, EmbeddingStore, ImageEmbedding
from ovsam_core.predictor import Predictor
from ovsam_core.prompts import Prompt, PromptError
from ovsam_core.vocabulary import (VocabularyError, base_mask_for, load_vocabulary, vocabulary_from_file)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    import os
    os.environ.setdefault("OVSAM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return Predictor("ovsam-test", progress=False)


@pytest.fixture(scope="module")
def image():
    rng = np.random.RandomState(0)
    img = (rng.rand(90, 160, 3) * 255).astype(np.uint8)
    img[20:60, 30:80] = (250, 10, 10)
    return img


def test_second_predict_does_no_encoder_work(predictor, image):
    before = predictor.encoder_calls
    a = predictor.predict(image, Prompt.from_box(30, 20, 80, 60), ["cat", "dog"])
    b = predictor.predict(image.copy(), Prompt.from_box(30, 20, 80, 60), ["cat", "dog"])
    assert predictor.encoder_calls == before + 1
    assert np.array_equal(a.objects[0].mask, b.objects[0].mask)


def test_outputs_in_original_pixels(predictor, image):
    pred = predictor.predict(image, [Prompt.from_box(30, 20, 80, 60), Prompt.from_points([(50, 40)])],
                             "coco", top_k=3)
    assert pred.image_size == (90, 160)
    for o in pred:
        assert o.mask.shape == (90, 160) and o.mask.dtype == bool
        assert o.area == int(o.mask.sum())
        if o.area:
            x0, y0, x1, y1 = o.bbox_xyxy
            ys, xs = np.nonzero(o.mask)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert len(o.top_k) == 3 and o.top_k[0] == (o.label, o.score)
        assert [s for _, s in o.top_k] == sorted((s for _, s in o.top_k), reverse=True)


def test_prompts_map_to_the_model_frame(predictor, image):
    """A box in original pixels equals the same box scaled by hand into the model frame."""
    emb = predictor.embed(image)
    s = predictor.image_size / 160
    out = predictor.loaded.model.decode(emb.features, boxes=torch.tensor([[30 * s, 20 * s, 80 * s, 60 * s]]))
    pred = predictor.predict(emb, Prompt.from_box(30, 20, 80, 60), ["a", "b"])
    from ovsam_core.preprocess import upsample_masks
    ref = torch.sigmoid(upsample_masks(out.mask_logits, emb.frame)) > 0.5
    assert np.array_equal(ref[0].numpy(), pred.objects[0].mask)


def test_batching_keeps_order_and_equals_single_calls(predictor, image):
    emb = predictor.embed(image)
    prompts = [Prompt.from_box(30, 20, 80, 60), Prompt.from_points([(50, 40)]),
               Prompt.from_points([(10, 10), (100, 70, 0)]), Prompt.from_box(0, 0, 160, 90),
               Prompt(points=((40.0, 30.0),), labels=(1,), box=(20.0, 10.0, 90.0, 70.0))] * 4
    many = predictor.predict(emb, prompts, ["cat", "dog", "car"])
    assert len(many) == len(prompts)
    for p, o in zip(prompts, many):
        single = predictor.predict(emb, p, ["cat", "dog", "car"]).objects[0]
        assert o.prompt == p.validated(90, 160)
        assert (o.mask != single.mask).mean() < 1e-3 and o.label == single.label


def test_embedding_from_another_model_is_refused(predictor, image):
    other = Predictor("ovsam-test", dtype="bf16", progress=False)
    emb = other.embed(image)
    with pytest.raises(EmbeddingMismatchError, match="embed the image again"):
        predictor.predict(emb, Prompt.from_box(1, 1, 50, 50), ["a"])


def test_fused_mode_runs_and_differs_from_head(predictor, image):
    head = predictor.predict(image, Prompt.from_box(30, 20, 80, 60), "coco", mode="head")
    fused = predictor.predict(image, Prompt.from_box(30, 20, 80, 60), "coco", mode="fused")
    assert head.objects[0].score != fused.objects[0].score
    with pytest.raises(ValueError, match="head or fused"):
        predictor.predict(image, Prompt.from_box(30, 20, 80, 60), "coco", mode="both")


@pytest.mark.parametrize("prompt,msg", [
    (Prompt(), "empty prompt"),
    (Prompt.from_box(50, 20, 10, 60), "x0 < x1"),
    (Prompt.from_box(500, 500, 600, 600), "outside the 160x90 image"),
    (Prompt.from_points([(200, 10)]), "outside"),
    (Prompt.from_points([(20, 10, 0)]), "only negative points"),
    (Prompt.from_points([(float("nan"), 10)]), "finite"),
    (Prompt(points=((1.0, 1.0),), labels=(2,)), "1 \\(positive\\) or 0"),
])
def test_bad_prompts(predictor, image, prompt, msg):
    with pytest.raises(PromptError, match=msg):
        predictor.predict(image, prompt, ["a"])


def test_box_partly_outside_is_clipped(predictor, image):
    o = predictor.predict(image, Prompt.from_box(-20, -5, 100, 200), ["a"]).objects[0]
    assert o.prompt.box == (0.0, 0.0, 100.0, 90.0)


def test_vocabulary_sources_and_hierarchy(tmp_path):
    (tmp_path / "v.txt").write_text("# animals\ncat\ndog, puppy\n\nbird  # flying\n")
    v = vocabulary_from_file(tmp_path / "v.txt")
    assert v.names == ("cat", "dog, puppy", "bird")
    (tmp_path / "v.yaml").write_text("classes:\n  - name: animal\n    children:\n      - cat\n"
                                     "      - name: dog\n        synonyms: [puppy]\n  - car\n")
    y = vocabulary_from_file(tmp_path / "v.yaml")
    assert y.names == ("animal", "cat", "dog,puppy", "car") and y.parents == (None, 0, 0, None)
    assert y.ancestors(2) == [0]
    (tmp_path / "v.json").write_text(json.dumps([{"name": "vehicle"}, {"name": "bus", "parent": "vehicle"}]))
    assert vocabulary_from_file(tmp_path / "v.json").parents == (None, 0)
    assert len(load_vocabulary("lvis")) == 1203 and len(load_vocabulary(["a", "b"])) == 2
    for bad, msg in [("[1, 2]", "string or an object"), ("{", "not valid JSON")]:
        (tmp_path / "b.json").write_text(bad)
        with pytest.raises(VocabularyError, match=msg):
            vocabulary_from_file(tmp_path / "b.json")
    with pytest.raises(VocabularyError, match="appears twice"):
        load_vocabulary(["cat", "Cat"])
    with pytest.raises(VocabularyError, match="vocabulary file not found: no-such-vocab.txt"):
        load_vocabulary("no-such-vocab.txt")      # looks like a path: a missing file, never a class name
    with pytest.raises(VocabularyError, match="neither a preset"):
        load_vocabulary("nosuchvocab")
    with pytest.raises(VocabularyError, match="empty"):
        load_vocabulary([])


def test_base_mask_for_custom_vocabulary():
    v = load_vocabulary(["person", "dog,puppy", "my gadget"])
    assert base_mask_for(v, "coco").tolist() == [True, False, False]   # dog is COCO-novel
    assert base_mask_for(load_vocabulary("coco"), "lvis").sum() == 48


def test_hierarchy_label_path(predictor, image, tmp_path):
    (tmp_path / "h.yaml").write_text("- name: thing\n  children: [a, b, c]\n")
    o = predictor.predict(image, Prompt.from_box(30, 20, 80, 60), str(tmp_path / "h.yaml")).objects[0]
    assert o.label == "thing" or o.label_path == ("thing",)


def test_classifier_disk_cache(tmp_path, monkeypatch, image):
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    p1 = Predictor("ovsam-test", progress=False)
    c1 = p1.classifier(["alpha", "beta,gamma"])
    assert len(list((tmp_path / "classifiers").glob("*.safetensors"))) == 1
    p2 = Predictor("ovsam-test", progress=False)
    import ovsam_core.vocabulary as vocab_mod
    monkeypatch.setattr(vocab_mod, "build_classifier", lambda *a, **k: pytest.fail("recomputed"))
    c2 = p2.classifier(["alpha", "beta,gamma"])
    assert torch.equal(c1.weights, c2.weights) and c1.signature == c2.signature
    assert p2.classifier(["alpha", "beta,gamma"]) is c2          # in-memory too


def test_lru_bounded_by_bytes_and_thread_safe(predictor, image):
    emb = predictor.embed(image)
    lru = EmbeddingLRU(max_bytes=int(emb.nbytes * 2.5))
    for i in range(5):
        lru.put(str(i), emb)
    assert len(lru) == 2 and lru.get("4") is emb and lru.get("0") is None
    assert lru.nbytes <= lru.max_bytes

    def worker(k):
        for i in range(200):
            lru.put(f"{k}-{i % 7}", emb)
            lru.get(f"{k}-{(i + 3) % 7}")
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(lru) == 2 and lru.nbytes == 2 * emb.nbytes


def test_disk_store_roundtrip_and_refusal(predictor, image, tmp_path):
    emb = predictor.embed(image)
    store = EmbeddingStore(tmp_path)
    path = store.put(emb)
    back = store.get(emb.signature)
    assert back.signature == emb.signature and torch.equal(back.features.embedding, emb.features.embedding)
    pred_a = predictor.predict(emb, Prompt.from_box(30, 20, 80, 60), ["a", "b"])
    pred_b = predictor.predict(back, Prompt.from_box(30, 20, 80, 60), ["a", "b"])
    assert np.array_equal(pred_a.objects[0].mask, pred_b.objects[0].mask)
    other = ("ovsam-lvis", "x", "y", "fp32")
    with pytest.raises(EmbeddingMismatchError, match="not by the model in use"):
        ImageEmbedding.load(path, expect=other)
    import shutil
    shutil.copy(path, store.path_for(emb.signature.__class__(**{**emb.signature.__dict__, "image_digest": "x"})))
    with pytest.raises(EmbeddingMismatchError, match="another signature"):
        store.get(emb.signature.__class__(**{**emb.signature.__dict__, "image_digest": "x"}))


def test_store_reused_across_predictors(image, tmp_path):
    a = Predictor("ovsam-test", store_dir=tmp_path, progress=False)
    a.embed(image)
    b = Predictor("ovsam-test", store_dir=tmp_path, progress=False)
    b.embed(image)
    assert a.encoder_calls == 1 and b.encoder_calls == 0


# property tests (valid inputs succeed with invariants, invalid ones raise PromptError naming the
# value): tests/test_properties.py


def test_twenty_thousand_classes_classify(predictor, image):
    """A 20,000-class classifier through the predictor (random prototypes: the decode path)."""
    import torch.nn.functional as F

    from ovsam_core import TextClassifier, Vocabulary
    n = 20_000
    vocab = Vocabulary("big", tuple(f"class {i}" for i in range(n)), tuple(map(str, range(n))))
    w = F.normalize(torch.randn(n, 2, predictor.loaded.model.cfg.clip_embed_dim), dim=-1)
    predictor._classifiers[(vocab.key, *vocab.names)] = TextClassifier(vocab, w, "random")
    pred = predictor.predict(image, [Prompt.from_box(30, 20, 80, 60)] * 3, vocab, top_k=5)
    assert all(o.label.startswith("class ") and len(o.top_k) == 5 for o in pred)
    assert 0 <= pred.objects[0].label_index < n


@pytest.mark.slow
def test_imagenet21k_end_to_end(tmp_path, monkeypatch, image):
    """The paper's headline: the 19,167-class ImageNet-21k preset, text embeddings included."""
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path))
    p = Predictor("ovsam-test", progress=False)
    pred = p.predict(image, Prompt.from_box(30, 20, 80, 60), "imagenet21k", top_k=3)
    assert pred.vocabulary == "imagenet21k" and len(p.classifier("imagenet21k")) == 19167
    assert len(list((tmp_path / "classifiers").glob("*.safetensors"))) == 1


def test_fused_clip_boxes_and_quirk_q1(predictor, image):
    """Default: the prompt box in the model frame; quirk_q1: GT boxes unscaled (upstream eval)."""
    emb = predictor.embed(image)
    net, clf = predictor.loaded.model, predictor.classifier("coco")
    gt = (30.0, 20.0, 80.0, 60.0)
    s = predictor.image_size / 160
    out = net.decode(emb.features, points=torch.tensor([[[50 * s, 40 * s]]]))
    from ovsam_core.vocabulary import base_mask_for, known_mask_for
    base, known = base_mask_for(clf.vocabulary, "coco"), known_mask_for(clf.vocabulary)
    assert known is not None and known.sum() == 65        # COCO's 15 "other" classes score -1000

    def probs(boxes):
        f = net.fused_logits(emb.features, out, clf.weights, torch.tensor([boxes]), base, known)
        return torch.softmax(f, -1)[0, :-1]

    q1 = predictor.predict(emb, Prompt.from_points([(50, 40)]), "coco", mode="fused", clip_boxes=[gt],
                           quirk_q1=True, top_k=1).objects[0]
    scaled = predictor.predict(emb, Prompt.from_points([(50, 40)]), "coco", mode="fused", clip_boxes=[gt],
                               top_k=1).objects[0]
    assert abs(q1.score - probs(gt).max().item()) < 1e-5
    assert abs(scaled.score - probs([v * s for v in gt]).max().item()) < 1e-5
    with pytest.raises(ValueError, match="needs a box per prompt"):
        predictor.predict(emb, Prompt.from_points([(50, 40)]), "coco", mode="fused", quirk_q1=True)


def test_zarr_embedding_roundtrip_and_refusal(predictor, image, tmp_path):
    pytest.importorskip("zarr")
    emb = predictor.embed(image)
    p = emb.save(tmp_path / "e.zarr")
    back = ImageEmbedding.load(p, expect=predictor.model_key)
    assert back.signature == emb.signature and back.frame == emb.frame
    assert torch.equal(back.features.c5, emb.features.c5)
    with pytest.raises(EmbeddingMismatchError, match="not by the model in use"):
        ImageEmbedding.load(p, expect=("ovsam-lvis", "x", "y", "fp32"))


def test_vocabulary_folder_is_read_once_and_again_after_a_change(predictor, image, tmp_path, monkeypatch):
    import ovsam_core.predictor as predictor_mod
    from ovsam_core.vocabulary import save_vocabulary_bundle

    folder = tmp_path / "vocab"
    save_vocabulary_bundle(predictor.classifier(["cat", "dog"]), folder)
    reads = []
    real = predictor_mod.load_vocabulary_bundle
    monkeypatch.setattr(predictor_mod, "load_vocabulary_bundle", lambda p: reads.append(p) or real(p))
    emb = predictor.embed(image)
    box = Prompt.from_box(30, 20, 80, 60)
    first = predictor.predict(emb, box, folder)
    again = predictor.predict(emb, box, str(folder))
    assert len(reads) == 1 and first.objects[0].label == again.objects[0].label
    assert {first.objects[0].label} <= {"cat", "dog"}
    save_vocabulary_bundle(predictor.classifier(["bird", "fish", "tree"]), folder)  # rebuilt in place
    changed = predictor.predict(emb, box, folder)
    assert len(reads) == 2 and changed.objects[0].label in {"bird", "fish", "tree"}


def test_top_k_carries_vocabulary_indices_even_when_display_names_repeat(predictor, image):
    """Two classes with one display name ("bat" the animal / "bat" the club): hosts must tell them
    apart by index, which results carry beside the names (JSON: top_k[i].index)."""
    from ovsam_core.results import prediction_to_json

    vocab = ["bat,flying mammal", "bat,baseball bat", "cat", "dog"]
    pred = predictor.predict(image, [Prompt.from_box(4, 4, 40, 30)], vocabulary=vocab, top_k=4)
    o = pred.objects[0]
    assert len(o.top_k_indices) == len(o.top_k) == 4 and sorted(o.top_k_indices) == [0, 1, 2, 3]
    assert o.top_k_indices[0] == o.label_index
    names = load_vocabulary(vocab).display_names()
    assert [names[i] for i in o.top_k_indices] == [n for n, _ in o.top_k]
    js = prediction_to_json(pred)["objects"][0]["top_k"]
    assert [e["index"] for e in js] == list(o.top_k_indices)
    auto = predictor.segment_everything(image, vocab, points_per_side=4, min_score=0.0, stability_thresh=0.0,
                                        min_area_ratio=0.0, top_k=3)
    for a in auto:
        assert a.top_k_indices[0] == a.label_index and [names[i] for i in a.top_k_indices] == [n for n, _ in a.top_k]
