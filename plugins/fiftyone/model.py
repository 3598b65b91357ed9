"""A FiftyOne model for ``apply_model``: named masks from prompts, or from nothing.

    dataset.apply_model(OVSAMModel(model="ovsam-lvis"), label_field="ovsam", prompt_field="ground_truth")
    dataset.apply_model(OVSAMModel(model="ovsam-lvis", classes=["cat", "dog"]), label_field="found")

**Prompted** (``prompt_field``: ``Detections`` -> boxes, ``Keypoints`` -> points; or
``box_prompt_field`` / ``point_prompt_field`` as for FiftyOne's SAM models): each image is
encoded once, and each prompt gives one ``Detection``: the tight relative box of its mask and the
mask cropped to it (an empty mask keeps the prompt's box), the top-1 class of the **ovsam
vocabulary** and its probability, and attributes ``top_k_labels``/``top_k_scores``,
``prompt_label``/``prompt_id``, ``prompt_type``, ``mask_area``, ``stability``. A sample without
prompts gets ``None``.

**No prompt field**: every object, no prompt (:mod:`~ovsam_plugins.fiftyone.auto`): find mode
for ``classes`` (or the labels of ``classes_field``, a config option or an ``apply_model``
keyword), everything mode without classes; ``auto_mode``, ``points_per_side``, ``min_score``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import fiftyone.core.labels as fol
import fiftyone.core.models as fom

from ovsam_core import (AutoSettings, LoadedImage, Predictor, check_recognition_options, dataclass_from_mapping,
                        labels_from_classes, load_image, object_fields, prelabel, prelabel_settings, shared_predictor,
                        written_names)

from .auto import field_classes, to_detections
from .prompts import sample_prompts
from .vocab import parse_vocabulary

#: ``apply_model`` keyword arguments naming prompt fields.
PROMPT_KEYS = ("prompt_field", "box_prompt_field", "point_prompt_field")
#: ``apply_model`` keyword naming the field whose labels are the classes of prompt-free labelling
CLASSES_KEY = "classes_field"

#: a :class:`ovsam_core.Predictor` shared per process (operators reuse loaded models)
get_predictor = shared_predictor


@dataclass
class OVSAMModelConfig:
    """Settings of :class:`OVSAMModel`.

    Args:
        model: a registered ovsam model (``ovsam models``).
        vocabulary: preset, file, ``vocab build`` folder, list of names or comma text (see
            :mod:`ovsam_plugins.fiftyone.vocab`); default the model's vocabulary.
        mode: ``head`` or ``fused`` recognition; default the model's.
        top_k: alternatives stored per object.
        device / dtype / weights_dir / weights / download: passed to the predictor.
        point_labels_attr: per-point attribute of a ``Keypoint`` with 1 (positive) / 0 (negative).
        classes / classes_field / auto_mode / points_per_side / min_score: prompt-free
            labelling (no prompt field), see :func:`~ovsam_plugins.fiftyone.labeling.label_everything`.
    """

    model: str = "ovsam-lvis"
    vocabulary: Any = None
    mode: Optional[str] = None
    top_k: int = 5
    device: str = "auto"
    dtype: str = "auto"
    weights_dir: Optional[str] = None
    weights: Optional[str] = None
    download: bool = True
    point_labels_attr: str = "point_labels"
    classes: Any = None
    classes_field: Optional[str] = None
    auto_mode: Optional[str] = None
    points_per_side: int = 32
    min_score: float = 0.5

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "OVSAMModelConfig":
        """The config of options ``d``; ``TypeError`` names unknown options and lists the accepted ones."""
        return dataclass_from_mapping(cls, d, "OVSAMModel")


class OVSAMModel(fom.Model, fom.SamplesMixin):
    """Open-vocabulary segmentation of the boxes/keypoints of a sample (see the module doc).

    Args:
        config: an :class:`OVSAMModelConfig` or a dict; or give its fields as keyword arguments.
        predictor: an existing :class:`ovsam_core.Predictor` to use (else one is loaded and
            shared per process by :func:`get_predictor`).
    """

    def __init__(self, config=None, *, predictor: Optional[Predictor] = None, **kwargs):
        fom.SamplesMixin.__init__(self)
        if config is None:
            config = OVSAMModelConfig.from_dict(kwargs)
        elif isinstance(config, dict):
            config = OVSAMModelConfig.from_dict({**config, **kwargs})
        elif kwargs:
            raise TypeError("give either a config or keyword options, not both")
        check_recognition_options(config.mode, config.top_k)
        self.config = config
        self.vocabulary = parse_vocabulary(config.vocabulary)
        self._predictor = predictor
        self._names: Optional[Tuple[List[str], Dict[str, str]]] = None
        self._classes = labels_from_classes(config.classes)
        self._auto: Optional[Tuple[Any, AutoSettings]] = None
        prelabel_settings(self._classes or config.classes_field, config.auto_mode,
                          points_per_side=config.points_per_side, min_score=config.min_score)  # a bad option fails here

    # FiftyOne model protocol: images, no batching, no transforms / logits / embeddings
    media_type, ragged_batches, transforms, preprocess, has_logits, has_embeddings = "image", False, None, False, False, False

    def __enter__(self):
        self.check_prompt_keys()
        self._auto = None
        self.predictor  # load (and fail) before any sample is processed
        return self

    def __exit__(self, *args):
        pass

    # ------------------------------------------------------------------ ovsam
    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            c = self.config
            self._predictor = get_predictor(c.model, device=c.device, dtype=c.dtype, weights_dir=c.weights_dir,
                                            weights=c.weights, download=c.download)
        return self._predictor

    def check_prompt_keys(self) -> List[str]:
        """The prompt field names of ``needs_fields`` (none: prompt-free); a clear error for a typo."""
        nf = dict(self.needs_fields or {})
        unknown = sorted(set(nf) - {*PROMPT_KEYS, CLASSES_KEY})
        if unknown:
            raise ValueError(f"OVSAMModel does not understand {', '.join(unknown)}; name the prompts with "
                             f"{', '.join(PROMPT_KEYS)} (or the classes of prompt-free labelling with {CLASSES_KEY})")
        return list(dict.fromkeys(nf[k] for k in PROMPT_KEYS if nf.get(k)))

    def class_names(self) -> Tuple[List[str], Dict[str, str]]:
        """(class name per vocabulary index, display name -> class name) of the vocabulary."""
        if self._names is None:
            self._names = written_names(self.predictor.classifier(self.vocabulary).vocabulary)
        return self._names

    def predict(self, arg, sample=None):
        if not self.check_prompt_keys():
            return self.predict_auto(arg, sample)
        if sample is None:
            raise ValueError("OVSAMModel reads its prompts from the sample: use it through apply_model(..., "
                             "prompt_field=...) or call predict(image, sample=sample)")
        dets, _ = self.predict_sample(arg, sample)
        return dets

    def predict_all(self, args, samples=None):
        return [self.predict(a, sample=s) for a, s in zip(args, samples or [None] * len(args))]

    def predict_sample(self, image, sample, prompt_fields: Optional[Sequence[str]] = None):
        """Detections for one sample and a summary ``{"prompts", "objects", "problems"}``.

        Args:
            image: HWC uint8 array (as ``apply_model`` passes), path, or :class:`LoadedImage`.
            sample: the sample holding the prompt field(s).
            prompt_fields: default the fields of ``needs_fields``.
        Returns:
            ``(Detections or None, stats)``; None when the sample has no usable prompt.
        """
        fields_ = list(prompt_fields or self.check_prompt_keys())
        if not fields_:
            raise ValueError("give the prompt field(s) of the sample")
        if not isinstance(image, (np.ndarray, LoadedImage)):
            image = load_image(image)
        h, w = (image.height, image.width) if isinstance(image, LoadedImage) else image.shape[:2]
        prompts, sources, problems = sample_prompts(sample, fields_, w, h, self.config.point_labels_attr)
        stats = {"prompts": len(prompts), "objects": 0, "problems": problems}
        if not prompts:
            return None, stats
        pred = self.predictor.predict(image, prompts, self.vocabulary, top_k=int(self.config.top_k),
                                      mode=self.config.mode)
        names, display = self.class_names()
        dets = [fol.Detection(**object_fields(o, w, h, names, display), **src.attributes())
                for o, src in zip(pred.objects, sources)]
        stats["objects"] = len(dets)
        return fol.Detections(detections=dets), stats

    def predict_auto(self, image, sample=None):
        """``Detections`` of every object of the classes (find) or of the vocabulary (everything)."""
        if self._auto is None:
            c = self.config
            labels, field = self._classes, c.classes_field or (self.needs_fields or {}).get(CLASSES_KEY)
            if labels is None and field:
                if sample is None:
                    raise ValueError(f"{CLASSES_KEY}={field!r} needs the sample: use apply_model")
                labels = labels_from_classes(field_classes(sample.dataset, field))
            self._auto = labels, prelabel_settings(labels, c.auto_mode, points_per_side=c.points_per_side,
                                                   min_score=c.min_score)
        labels, settings = self._auto
        return to_detections(prelabel(self.predictor, image, settings, labels, vocabulary=self.vocabulary))
