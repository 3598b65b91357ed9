"""What a new FiftyOne user hits (issue 13): README snippets run as written, optional operator
inputs with defaults, and a mistyped vocabulary path is an error at every entry point."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("fiftyone.operators")

URI = "@ovsam/ovsam"
README = Path(__file__).resolve().parents[2] / "plugins" / "fiftyone" / "README.md"
BAD_VOCAB = "/nonexistent/my_vocab.txt"


def readme_python_blocks():
    """(section title, code) of every ```python block of the FiftyOne README, in order."""
    text = README.read_text()
    out, section = [], ""
    for m in re.finditer(r"^## ([^\n]*)$|^```python\n(.*?)^```", text, re.S | re.M):
        if m.group(1) is not None:
            section = m.group(1)
        else:
            out.append((section, m.group(2)))
    return out


def test_readme_has_python_snippets():
    blocks = readme_python_blocks()
    assert len(blocks) >= 5
    assert any('execute_operator("@ovsam/ovsam/evaluate"' in code for _, code in blocks)


def test_readme_snippets_run_as_written(fo, installed, make_dataset, predictor, monkeypatch):
    """The README's snippets run top to bottom in one namespace, unchanged, as a reader would
    run them, against a real dataset named as in the README. The only difference: whichever
    model they name is served by the tiny ``ovsam-test`` predictor (no download here)."""
    from ovsam_plugins.fiftyone import model as model_mod

    asked = []
    monkeypatch.setattr(model_mod, "get_predictor", lambda name="ovsam-lvis", **kw: asked.append(name) or predictor)
    monkeypatch.setattr("ovsam_core.weights.hub.download_model", lambda spec, *a, **k: {})  # the zoo's weight fetch
    if "my-dataset" in fo.list_datasets():
        fo.load_dataset("my-dataset").delete()
    ds = make_dataset().clone("my-dataset")
    ns = {}
    try:
        for title, code in readme_python_blocks():
            exec(compile(code, f"{README.name} [{title}]", "exec"), ns)  # noqa: S102 - the README's own code
        ds.reload()
        assert ds.count("ovsam.detections") == 3
        assert ds.has_evaluation("ovsam_mask") and ds.has_evaluation("ovsam_cls")
        assert ns["result"]["objects"] == 3
        # the no-prompt snippets: every sample labelled, evaluated with mAP (the random model's own numbers)
        assert ds.exists("ovsam_auto").count() == ds.exists("found").count() == ds.exists("found_op").count() == 4
        assert ns["summary"]["labelled"] == 4 and ds.info["ovsam"]["runs"]["ovsam_auto"]["classes_field"] == "ground_truth"
        assert set(ds.distinct("found.detections.label")) <= {"cat", "dog"}
        assert ds.has_evaluation("auto") and ds.has_evaluation("auto_op_cls")
        assert "ovsam-lvis" in asked
    finally:
        ds.delete()


def test_operators_with_only_the_documented_params(fo, installed, make_dataset, predictor):
    """Inputs with a default are optional for programmatic calls (FiftyOne does not fill them in)."""
    import fiftyone.operators as foo

    ds = make_dataset()
    r = foo.execute_operator(f"{URI}/label_with_prompts", {"dataset": ds, "params": {
        "prompt_field": "ground_truth", "model": "ovsam-test", "vocabulary": "cat, dog", "device": "cpu"}})
    assert r.error is None and r.result["labelled"] == 2
    assert ds.count("ovsam.detections") == 3
    r = foo.execute_operator(f"{URI}/evaluate", {"dataset": ds, "params": {"pred_field": "ovsam"}})
    assert r.error is None, r.error
    assert r.result["objects"] == 3 and ds.has_evaluation("ovsam_mask")


def test_mistyped_vocabulary_path_is_an_error_everywhere(fo, installed, make_dataset, predictor, capsys):
    import fiftyone.operators as foo

    from ovsam_core import VocabularyError
    from ovsam_core.cli import main
    from ovsam_plugins.fiftyone import OVSAMModel, label_with_prompts, set_vocabulary

    ds = make_dataset()
    with pytest.raises(VocabularyError, match="vocabulary file not found"):
        label_with_prompts(ds, "ground_truth", "ovsam", model="ovsam-test", vocabulary=BAD_VOCAB, predictor=predictor)
    with pytest.raises(VocabularyError, match="vocabulary file not found"):
        OVSAMModel(model="ovsam-test", vocabulary=BAD_VOCAB)
    with pytest.raises(VocabularyError, match="vocabulary file not found"):
        set_vocabulary(ds, BAD_VOCAB)
    with pytest.raises(Exception, match="vocabulary file not found"):
        foo.execute_operator(f"{URI}/label_with_prompts", {"dataset": ds, "params": {
            "prompt_field": "ground_truth", "model": "ovsam-test", "vocabulary": BAD_VOCAB, "device": "cpu"}})
    assert main(["fiftyone", "label", ds.name, "--prompt-field", "ground_truth", "--model", "ovsam-test",
                 "--vocab", BAD_VOCAB, "--device", "cpu", "-q"]) == 2
    assert "vocabulary file not found: /nonexistent/my_vocab.txt" in capsys.readouterr().err
    assert not ds.has_sample_field("ovsam")  # nothing was labelled with the path as a class name


def main_readme_block(heading: str, lang: str) -> str:
    """The first ```lang block under ``### heading`` of the main README."""
    text = (README.parents[2] / "README.md").read_text()
    section = text[text.index(f"### {heading}\n"):]
    section = section[:section.index("\n## ")]
    return re.search(rf"^```{lang}\n(.*?)^```", section, re.S | re.M).group(1)


def test_main_readme_quick_start_runs(fo, predictor, monkeypatch):
    """The main README's FiftyOne quick start, unchanged, in the repository folder (whichever
    model it names is served by ``ovsam-test`` here): a named mask for the prompt box."""
    from ovsam_plugins.fiftyone import model as model_mod

    asked = []
    monkeypatch.setattr(model_mod, "get_predictor", lambda name="ovsam-lvis", **kw: asked.append(name) or predictor)
    monkeypatch.chdir(README.parents[2])
    code = main_readme_block("FiftyOne", "python")
    ns = {}
    try:
        exec(compile(code, "README.md [FiftyOne]", "exec"), ns)  # noqa: S102 - the README's own code
        det = ns["dataset"].first().ovsam.detections[0]
        assert det.label in [n.split(",")[0].strip() for n in predictor.classifier().vocabulary.names]
        assert 0 < det.confidence <= 1
        assert det.mask is not None and det.mask.any()
        assert set(asked) == {"ovsam-shapes"}
        assert ns["scene"].first().shapes is not None      # the no-prompt lines ran (random model: any count)
    finally:
        for name in ("ovsam-quickstart", "ovsam-scene"):
            if name in fo.list_datasets():
                fo.load_dataset(name).delete()
