"""What ovsam keeps on a dataset: ``dataset.info["ovsam"]`` (vocabulary, runs, evaluations).

``runs[label_field]`` records how a field was labelled (its prompt or classes field, model,
settings, whether the run finished): resuming and evaluation read it.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

from ovsam_core import entry_of, with_entry

INFO_KEY = "ovsam"


def dataset_name(samples) -> str:
    """The name of the dataset of a dataset or view."""
    return getattr(samples, "dataset_name", None) or samples.name


def root(samples):
    """The dataset of a dataset or view."""
    import fiftyone as fo

    return samples if isinstance(samples, fo.Dataset) else fo.load_dataset(dataset_name(samples))


def field_kind(samples, field: str) -> Optional[str]:
    """The label type of a field (``"Detections"``, ...), the field class name for other fields,
    ``None`` when there is no such field."""
    f = samples.get_field(field)
    doc = getattr(f, "document_type", None)
    return None if f is None else doc.__name__ if doc is not None else type(f).__name__


def fields_of_kind(samples, kinds: Iterable[str]) -> List[str]:
    """Top-level fields of ``samples`` holding one of the label types ``kinds``, sorted."""
    kinds = set(kinds)
    return sorted(n for n in samples.get_field_schema() if field_kind(samples, n) in kinds)


def get_info(samples, section: str) -> Any:
    """``dataset.info["ovsam"][section]`` (None when absent)."""
    return entry_of(root(samples).info, INFO_KEY, section)


def set_info(samples, section: str, key: Optional[str], value: Any) -> None:
    """Set ``info["ovsam"][section][key]`` (``key=None``: the section itself; ``value=None``
    with ``key=None`` removes it) and save the dataset."""
    ds = root(samples)
    ds.info = with_entry(ds.info, INFO_KEY, section, key, value)
    ds.save()


def record_run(samples, label_field: str, run: Dict[str, Any]) -> None:
    """Store the record of the run writing ``label_field``."""
    set_info(samples, "runs", label_field, dict(run))


def get_run(samples, label_field: str) -> Optional[Dict[str, Any]]:
    """The record of the last ovsam run that wrote ``label_field``, if any."""
    return (get_info(samples, "runs") or {}).get(label_field)
