"""Text-classifier parity against the upstream golden vectors (``shared/parity``).

Upstream encoded one prompt per call at full context (``batch_size_used`` = 1); the fast path
(batched, grouped by length, truncated to the longest prompt) is compared with a tolerance.
Text features are O(4) in magnitude, so ``abs 1e-4`` is ~2.5e-5 relative; the classifier is
L2-normalised (``abs 1e-5``). On the machine that made the goldens the batch-1 path was
bit-exact; on other CPUs (BLAS kernels) expect a few 1e-6.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from parity_paths import parity_dir  # $OVSAM_PARITY_DIR or ../shared/parity; fixture parity_weights_dir
from ovsam_core.text import (TextEncoder, build_classifier, class_prompts,
                             classifier_from_features, embed_prompts, synonym_counts)

FEATURE_ATOL = 1e-4
CLASSIFIER_ATOL = 1e-5


PARITY_DIR = parity_dir()
GOLDEN = PARITY_DIR / "expected" / "text_vocab_public.expected.npz"

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(not GOLDEN.is_file(),
                       reason=f"parity vectors not found at {PARITY_DIR} "
                              "(set OVSAM_PARITY_DIR to the shared/parity folder)"),
]


@pytest.fixture(scope="module")
def encoder(parity_weights_dir) -> TextEncoder:
    """The CLIP text tower, loaded from the official file names by the project's loader."""
    from ovsam_core.weights.loader import load_text_encoder

    return load_text_encoder("ovsam-lvis", weights_dir=parity_weights_dir, progress=False)


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def class_names(golden):
    return [str(n) for n in golden["class_names"]]


@pytest.fixture(scope="module")
def prompts(class_names):
    return [p for name in class_names for syn in class_prompts(name) for p in syn]


def _maxdiff(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a.float() - torch.from_numpy(b)).abs().max())


def test_prompts_match_descriptions(golden, prompts):
    assert prompts == [str(d) for d in golden["descriptions"]]
    assert int(golden["batch_size_used"]) == 1


def test_tokens_first14(encoder, golden, prompts):
    tok = encoder.tokenize(prompts[:14])
    np.testing.assert_array_equal(tok.numpy(), golden["tokens_first14"].astype(np.int64))


def test_recipe_on_golden_features(golden, class_names):
    # Template ensembling + padding alone, from upstream's own raw features: bit-exact.
    cls = classifier_from_features(torch.from_numpy(golden["text_features_raw"]),
                                   synonym_counts(class_names), 14)
    assert _maxdiff(cls, golden["classifier"]) == 0.0


def test_text_features_batch1_full_context(encoder, golden, prompts):
    # As upstream: one prompt per call, full 77-token context.
    feats = embed_prompts(encoder, prompts, batch_size=1, truncate=False, progress=False)
    diff = _maxdiff(feats, golden["text_features_raw"])
    print(f"text_features_raw batch-1 full-context max|diff| = {diff:.3g}")
    assert diff <= FEATURE_ATOL


def test_text_features_batched_truncated(encoder, golden, prompts):
    feats = embed_prompts(encoder, prompts, batch_size=256, truncate=True, progress=False)
    diff = _maxdiff(feats, golden["text_features_raw"])
    print(f"text_features_raw batched+truncated max|diff| = {diff:.3g}")
    assert diff <= FEATURE_ATOL


def test_classifier(encoder, golden, class_names):
    cls = build_classifier(encoder, class_names, progress=False)
    assert cls.shape == golden["classifier"].shape == (12, 2, 768)
    diff = _maxdiff(cls, golden["classifier"])
    print(f"classifier (batched+truncated) max|diff| = {diff:.3g}")
    assert diff <= CLASSIFIER_ATOL
    assert torch.equal(cls[:11, 1], cls[:11, 0])          # padding = first synonym
