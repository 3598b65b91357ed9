"""Text side of OVSAM: CLIP text encoder, prompt-ensembled classifier, shipped vocabularies."""
from .encoder import TextEncoder
from .classifier import (VILD_TEMPLATES, build_classifier, class_prompts,
                         classifier_from_features, embed_prompts,
                         load_classifier_file, save_classifier, split_label, synonym_counts)
from .vocab_data import (VOCABULARIES, Vocabulary, coco_classes, get_vocabulary,
                         imagenet21k_classes, lvis_classes)

__all__ = [
    "TextEncoder", "VILD_TEMPLATES", "build_classifier", "class_prompts",
    "classifier_from_features", "embed_prompts",
    "load_classifier_file", "save_classifier", "split_label", "synonym_counts",
    "VOCABULARIES", "Vocabulary", "coco_classes", "get_vocabulary", "imagenet21k_classes",
    "lvis_classes",
]
