"""FiftyOne remote-zoo source for ovsam (``manifest.json`` beside this file).

Installed into ``fo.config.model_zoo_dir`` by ``ovsam fiftyone install --zoo`` (or fetched by
``foz.register_zoo_model_source(<this repository>)``); then::

    import fiftyone.zoo as foz
    model = foz.load_zoo_model("ovsam-lvis", vocabulary="lvis")
    dataset.apply_model(model, label_field="ovsam", prompt_field="ground_truth")

FiftyOne imports this file under a name of its own: absolute imports only. The weights live in
ovsam's cache (``ovsam models``); the zoo folder only keeps a small record per model.
"""


def download_model(model_name, model_path):
    """Fetches and verifies the model's weights into ovsam's cache; records them at ``model_path``."""
    from ovsam_core import record_model_download

    record_model_download(model_name, model_path)


def load_model(model_name, model_path, **kwargs):
    """An :class:`ovsam_plugins.fiftyone.model.OVSAMModel`; ``kwargs`` are its options."""
    from ovsam_plugins.fiftyone.model import OVSAMModel

    return OVSAMModel(model=model_name, **kwargs)
