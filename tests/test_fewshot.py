"""ovsam_core.hosts.fewshot: prototypes (store, similarities) and blending with text probabilities."""
import numpy as np
import pytest

from ovsam_core import PrototypeSet, PrototypeStore, blend_probabilities


def test_blend_keeps_labels_without_prototypes():
    p = np.array([0.5, 0.3, 0.2])
    np.testing.assert_allclose(blend_probabilities(p, [None, None, None], 50.0), p)
    q = blend_probabilities(p, [None, 0.1, 0.9], 50.0)
    assert q[0] == pytest.approx(0.5) and q[1:].sum() == pytest.approx(0.5) and q[2] > 0.49
    u = blend_probabilities(np.array([1.0, 0.0]), [None, 0.5], 50.0)  # no text evidence: uniform prior
    assert u.sum() == pytest.approx(1.0) and u[1] > 0


def test_similarities_are_centred_and_take_the_nearest_prototype():
    v = np.eye(4, dtype=np.float32)
    ps = PrototypeSet(("a", "a", "b", "c"), v)
    s = ps.similarities(v[0])
    assert set(s) == {"a", "b", "c"} and s["a"] > s["b"]
    assert PrototypeSet(("a",), v[:1]).similarities(v[0]) == {}  # one prototype: nothing to compare


def test_store_replaces_an_annotation_and_counts(tmp_path):
    st = PrototypeStore(tmp_path / "p.sqlite3", max_per_label=2)
    v = np.eye(3, dtype=np.float32)
    assert st.replace_annotation("1", "m", "ann1", "t1", [("a", "r1", v[0]), ("b", "r2", v[1])]) == 2
    assert st.replace_annotation("1", "m", "ann1", "t1", [("a", "r1", v[2])]) == 1
    assert st.counts() == {"1": 1}
    assert st.delete_annotation("1", "ann1") == 1 and st.counts().get("1", 0) == 0
