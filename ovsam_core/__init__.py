"""ovsam_core: Open-Vocabulary SAM in plain PyTorch (model, weights registry, text classifier).

Public API (everything an adapter may import)::

    from ovsam_core import Predictor, Prompt
    predictor = Predictor("ovsam-lvis")             # resolves, verifies and loads the weights
    emb = predictor.embed("photo.jpg")              # encode once (cached by content) ...
    pred = predictor.predict(emb, [Prompt.from_box(10, 20, 200, 180),
                                   Prompt.from_points([(50, 60), (80, 90, 0)])],
                             vocabulary="coco")     # ... decode many; original-image pixels
    for obj in pred: print(obj.label, obj.score, obj.mask.shape, obj.top_k)

Lower level: :class:`OVSAM` (``extract_features`` / ``decode`` / ``head_logits`` /
``fused_logits`` in the 1024 model frame), :func:`load_model`, :func:`build_classifier`.

This package never imports a host application (napari, Qt, FiftyOne, Flask, Label Studio).
"""
from __future__ import annotations

__version__ = "0.1.0"

from .config import ARCHS, ArchConfig, OVSAM_RN50X16, OVSAM_TEST
from .modeling import OVSAM, HeadOutput, ImageFeatures, classify, fuse_logits
from .text import TextEncoder, VILD_TEMPLATES, build_classifier, load_classifier_file, split_label
from .weights.checkpoint import CheckpointError, CheckpointMismatchError, read_checkpoint
from .weights.registry import (KeyRule, ModelSpec, WeightFile, get_model_spec, list_models,
                               register_model, unregister_model)
from .weights.loader import LoadedModel, build_model, load_model, load_text_encoder
from .weights.hub import (HashMismatchError, WeightsError, WeightsNotFoundError, cache_dir,
                          download_model)
from .weights.convert import convert_model
from .images import IMAGE_SUFFIXES, ImageError, LoadedImage, image_digest, load_image
from .prompts import Prompt, PromptError
from .embedding import (EmbeddingLRU, EmbeddingMismatchError, EmbeddingSignature, EmbeddingStore,
                        ImageEmbedding)
from .text.vocab_data import Vocabulary, get_vocabulary
from .vocabulary import (TextClassifier, VocabularyError, load_vocabulary, load_vocabulary_bundle,
                         is_preset, looks_like_path, parse_vocabulary_text, save_vocabulary_bundle, vocabulary_to_text)
from .predictor import ObjectPrediction, Prediction, Predictor, check_recognition_options, resolve_device
from .runtime.auto import CHOICES as PRECISION_CHOICES
from .results import mask_to_rle, prediction_to_json, render_overlay, rle_to_mask
from .hosts.fetch import (ImageTooLargeError, UnsafeSourceError, check_image_pixels, decode_data_url,
                    image_header_size, is_public_address, load_image_limited, safe_join)
from .hosts.tiling import Region, plan_region
from .hosts.labelmap import HostLabel, LabelMapper, merge_labels, normalise
from .hosts.fewshot import PrototypeSet, PrototypeStore, blend_probabilities, region_descriptor
from .automatic import AutoObject, AutoResult, Cancelled, EverythingOptions
from .hosts.prelabel import (AUTO_MODES, AutoSettings, LabeledObject, PrelabelResult, coco_annotations, instance_image,
                       label_queries, prelabel)
from .hosts.jobs import BatchReport, Journal, run_batch
from .hosts.serving import (BytesLRU, ImageCache, JobQueue, LazyModel, Metrics, ProjectOptions, parse_bool, rss_bytes,
                      dataclass_from_env, dataclass_to_env, env_table, json_object, overrun_note, xml_text)
from .hosts.labelchoice import LABEL_SOURCES, choose_label
from .hosts.safe_download import (DownloadError, RefusedSource, check_public, data_url_bytes, host_port, read_capped_file,
                            safe_download)
from .hosts.labelprompts import (LabelledRegion, PromptObject, PrototypeCache, label_mapper, label_prompts,
                           region_prototypes)
from .hosts.serviceoptions import PredictorOptions, PrelabelDefaults
from .hosts.hostprompts import click_prompt, clip_point, mask_prompt, rotated_box_bounds
from .masks import (MaskPolygons, crop_iou, crop_to_rle, mask_box, mask_to_polygons, polygon_to_mask,
                    resize_nearest, tight_crop)
from .hosts.labelvolume import ChunkedLabels, new_labels, pyramid
from .hosts.planesource import ImageChannel, ImageSource
from .hosts.planeprompts import Preview, PromptSet
from .hosts.labelbook import LabelBook, ObjectRecord, features_table
from .hosts.labelexport import export_all, read_coco, to_coco
from .hosts.annotator import Annotator, AnnotatorSettings
from .hosts.relative import (crop_in_pixels, pixels_to_relative, prompt_from_relative, prompt_result_box,
                       relative_box_pixels, relative_iou, relative_mask, paired_ious)
from .hosts.relative import finite_number, pixels_to_relative_points, relative_box_bounds, relative_to_pixels
from .hosts.rates import detection_rates, label_accuracy, match_rates, same_label
from .hosts.classnames import labels_from_classes, labels_from_names, written_names
from .hosts.objectfields import object_fields
from .hosts.labelruns import (RunOutcome, check_output_field, entry_of, prelabel_settings, recorded_run, run_summary,
                        same_run, with_entry)
from .hosts.hostinstall import install_files, record_model_download, require_package
from .hosts.keywords import dataclass_from_mapping
from .hosts.shared import shared_predictor
from .hosts.modelservice import (ServedModel, ServiceError, answer_each, credentials_match, error_answer, internal_error,
                                 request_body, service_errors)
from .hosts.learner import PrototypeLearner, labelled_images
from .hosts.outputprelabel import prelabel_outputs
from .hosts.cliopts import (add_dataclass_options, add_model_options, check_options, add_prelabel_options, dataclass_overrides,
                            grid_options, option, prelabel_overrides)
from .hosts.jsonlabels import label_from_json, labels_from_json, split_names
from .hosts.apitoken import ApiToken, is_jwt
from .hosts.hostapi import HostDownloader, parse_hosts
from .hosts.wsgiserver import add_server_options, exec_gunicorn, gunicorn_argv, serve_wsgi, setup_logging, use_gunicorn
from .hosts.vocab_source import (VocabInput, embedded_source, vocabulary_from_record, vocabulary_record, vocabulary_size,
                           vocabulary_source)

__all__ = [
    "__version__", "ARCHS", "ArchConfig", "OVSAM_RN50X16", "OVSAM_TEST",
    "OVSAM", "HeadOutput", "ImageFeatures", "classify", "fuse_logits",
    "TextEncoder", "VILD_TEMPLATES", "build_classifier", "load_classifier_file", "split_label",
    "CheckpointError", "CheckpointMismatchError", "read_checkpoint",
    "KeyRule", "ModelSpec", "WeightFile", "get_model_spec", "list_models", "register_model",
    "unregister_model", "LoadedModel", "build_model", "load_model", "load_text_encoder",
    "HashMismatchError", "WeightsError", "WeightsNotFoundError", "cache_dir", "download_model",
    "convert_model",
    "IMAGE_SUFFIXES", "ImageError", "LoadedImage", "image_digest", "load_image", "Prompt", "PromptError",
    "EmbeddingLRU", "EmbeddingMismatchError", "EmbeddingSignature", "EmbeddingStore", "ImageEmbedding",
    "Vocabulary", "get_vocabulary", "TextClassifier", "VocabularyError", "load_vocabulary",
    "load_vocabulary_bundle", "save_vocabulary_bundle", "is_preset", "looks_like_path", "parse_vocabulary_text",
    "vocabulary_to_text",
    "ObjectPrediction", "Prediction", "Predictor", "resolve_device", "PRECISION_CHOICES",
    "mask_to_rle", "prediction_to_json", "render_overlay", "rle_to_mask",
    "ImageTooLargeError", "UnsafeSourceError", "check_image_pixels", "decode_data_url", "image_header_size",
    "is_public_address", "load_image_limited", "safe_join",
    "Region", "plan_region",
    "HostLabel", "LabelMapper", "normalise", "PrototypeSet", "PrototypeStore", "blend_probabilities",
    "region_descriptor",
    "AutoObject", "AutoResult", "Cancelled", "EverythingOptions",
    "AUTO_MODES", "AutoSettings", "LabeledObject", "PrelabelResult", "coco_annotations", "instance_image",
    "label_queries", "prelabel", "BatchReport", "Journal", "run_batch",
    "BytesLRU", "JobQueue", "LazyModel", "Metrics", "parse_bool", "rss_bytes", "dataclass_from_env", "dataclass_to_env",
    "LABEL_SOURCES", "choose_label", "DownloadError", "RefusedSource", "check_public", "host_port", "safe_download",
    "ImageCache", "ProjectOptions", "env_table", "json_object", "overrun_note", "xml_text", "data_url_bytes", "read_capped_file",
    "LabelledRegion", "PromptObject", "PrototypeCache", "label_mapper", "label_prompts", "region_prototypes",
    "PredictorOptions", "PrelabelDefaults", "click_prompt", "clip_point", "mask_prompt", "rotated_box_bounds",
    "MaskPolygons", "crop_iou", "crop_to_rle", "mask_box", "mask_to_polygons", "polygon_to_mask",
    "resize_nearest", "tight_crop",
    "ChunkedLabels", "new_labels", "pyramid", "ImageChannel", "ImageSource", "Preview", "PromptSet", "LabelBook",
    "ObjectRecord", "features_table", "export_all", "read_coco", "to_coco", "Annotator", "AnnotatorSettings",
    "crop_in_pixels", "pixels_to_relative", "prompt_from_relative", "prompt_result_box", "relative_box_pixels",
    "relative_iou", "relative_mask", "detection_rates", "label_accuracy", "same_label",
    "labels_from_classes", "labels_from_names", "written_names", "shared_predictor", "object_fields",
    "RunOutcome", "check_output_field", "entry_of", "prelabel_settings", "recorded_run", "run_summary", "same_run",
    "with_entry",
    "install_files", "record_model_download", "require_package", "check_recognition_options",
    "dataclass_from_mapping", "match_rates", "paired_ious",
    "credentials_match", "error_answer", "request_body",
    "ServedModel", "ServiceError", "service_errors", "answer_each", "internal_error", "PrototypeLearner", "labelled_images",
    "prelabel_outputs",
    "add_model_options", "add_prelabel_options", "grid_options", "prelabel_overrides",
    "add_dataclass_options", "check_options", "dataclass_overrides", "option",
    "label_from_json", "labels_from_json", "merge_labels", "split_names",
    "ApiToken", "is_jwt", "HostDownloader", "parse_hosts",
    "exec_gunicorn", "gunicorn_argv", "setup_logging", "use_gunicorn", "add_server_options", "serve_wsgi",
    "finite_number", "pixels_to_relative_points", "relative_box_bounds", "relative_to_pixels",
    "VocabInput", "embedded_source", "vocabulary_from_record", "vocabulary_record", "vocabulary_size", "vocabulary_source",
]
