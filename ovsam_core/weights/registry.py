"""Registry of named OVSAM models: architecture, source files, hashes and licences.

A model is assembled from several upstream files (CLIP, SAM's prompt encoder, the SAM2CLIP
neck, the CLIP2SAM FPN/head). Each :class:`WeightFile` says where a file is hosted, its
sha256 when published, its licence, and how its keys map onto the model
(:class:`KeyRule`). Users may register their own models with :func:`register_model`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..config import ArchConfig, ARCHS

# --------------------------------------------------------------------------- licences
LICENSE_OVSAM = ("S-Lab License 1.0 (non-commercial use only; see "
                 "https://github.com/HarborYuan/ovsam/blob/main/LICENSE)")
LICENSE_SAM = "Apache-2.0 (Meta segment-anything)"
LICENSE_CLIP = ("OpenAI CLIP model weights, released under the terms published by OpenAI "
                "(https://github.com/openai/CLIP; code MIT)")
LICENSE_NONE = "test weights (random init), no restrictions"
LICENSE_OVSAM_OWN = ("Apache-2.0 (trained by ovsam's own pipeline on its synthetic shapes; no third-party "
                     "weights or data)")


@dataclass(frozen=True)
class KeyRule:
    """Move the keys of a file that start with ``src`` to ``dst`` + the rest of the key.

    ``target`` is ``"image"`` (the :class:`~ovsam_core.modeling.OVSAM` model),
    ``"text"`` (the CLIP text encoder) or ``"classifier"`` (a bare (C, P, D) tensor file).
    """

    src: str
    dst: str
    target: str = "image"
    rename: Tuple[Tuple[str, str], ...] = ()   # (old first component, new) after ``src`` is stripped


@dataclass(frozen=True)
class WeightFile:
    """One file of a model, as the upstream project ships it.

    Attributes:
        filename: the official file name; ``weights_dir`` must hold it under this name.
        repo_id/repo_type/revision/path_in_repo: Hugging Face hosting (downloaded with
            ``huggingface_hub``; ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` are honoured).
        url: plain HTTPS hosting, used when ``repo_id`` is None.
        sha256: the published hash, or None when upstream publishes none (then the hash
            seen on first download is recorded in the cache and checked afterwards).
        size: bytes, when known (progress bars, sanity checks).
        rules: how keys map onto the model; keys matched by ``ignore`` prefixes are skipped,
            any other unmatched key is an error.
        keep_only: after download, keep only the keys the rules use (the SAM ViT-H file is
            2.5 GB, OVSAM needs its 6.5 k-parameter prompt encoder).
        alternatives: other file names accepted in ``weights_dir``/cache for the same role
            (e.g. open_clip's safetensors instead of OpenAI's TorchScript archive).
    """

    role: str
    filename: str
    license: str
    rules: Tuple[KeyRule, ...]
    repo_id: Optional[str] = None
    repo_type: str = "model"
    revision: str = "main"
    path_in_repo: Optional[str] = None
    url: Optional[str] = None
    sha256: Optional[str] = None
    size: Optional[int] = None
    ignore: Tuple[str, ...] = ()
    keep_only: bool = False
    alternatives: Tuple["WeightFile", ...] = ()

    @property
    def source(self) -> str:
        if self.repo_id:
            kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
            return f"https://huggingface.co/{kind}{self.repo_id}/blob/{self.revision}/{self.path_in_repo or self.filename}"
        return self.url or "(local only)"


@dataclass(frozen=True)
class ModelSpec:
    """A named, loadable model."""

    name: str
    arch: str
    description: str
    files: Tuple[WeightFile, ...]
    mode: str = "head"                # default recognition mode: "head" (demo) or "fused" (eval)
    vocabulary: str = "lvis"          # vocabulary the classifier file / base split refers to
    extra: Dict[str, str] = field(default_factory=dict)
    #: weights shipped inside the package (``ovsam_core/weights/data/<packaged>``, a fused
    #: safetensors file): loaded with no download, checked against ``packaged_sha256``.
    packaged: Optional[str] = None
    packaged_sha256: Optional[str] = None
    packaged_license: str = ""
    #: a model card shipped beside the packaged weights (markdown), shown by ``ovsam models``.
    card: Optional[str] = None

    @property
    def arch_config(self) -> ArchConfig:
        return ARCHS[self.arch]

    @property
    def licenses(self) -> Dict[str, str]:
        out = {f.role: f.license for f in self.files}
        if self.packaged:
            out["packaged"] = self.packaged_license
        return out


# --------------------------------------------------------------------------- upstream files
_CLIP_VISUAL_RENAME = (
    ("conv1", "stem.0"), ("bn1", "stem.1"), ("conv2", "stem.3"), ("bn2", "stem.4"),
    ("conv3", "stem.6"), ("bn3", "stem.7"), ("attnpool", "head"),
)
_CLIP_RULES = (
    KeyRule("visual.", "backbone.", rename=_CLIP_VISUAL_RENAME),
    KeyRule("token_embedding.", "token_embedding.", target="text"),
    KeyRule("positional_embedding", "positional_embedding", target="text"),
    KeyRule("transformer.", "transformer.", target="text"),
    KeyRule("ln_final.", "ln_final.", target="text"),
    KeyRule("text_projection", "text_projection", target="text"),
)
_CLIP_IGNORE = ("logit_scale", "input_resolution", "context_length", "vocab_size", "attn_mask")

CLIP_OPENCLIP = WeightFile(
    role="clip", filename="open_clip_model.safetensors", license=LICENSE_CLIP,
    repo_id="timm/resnet50x16_clip.openai", rules=_CLIP_RULES, ignore=_CLIP_IGNORE,
)
CLIP_OPENAI = WeightFile(
    role="clip", filename="RN50x16.pt", license=LICENSE_CLIP,
    url=("https://openaipublic.azureedge.net/clip/models/"
         "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa/RN50x16.pt"),
    sha256="52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
    rules=_CLIP_RULES, ignore=_CLIP_IGNORE, alternatives=(CLIP_OPENCLIP,),
)
SAM_VIT_H = WeightFile(
    role="prompt_encoder", filename="sam_vit_h_4b8939.pth", license=LICENSE_SAM,
    url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
    size=2_564_550_879,
    rules=(KeyRule("prompt_encoder.", "pe."),),
    ignore=("image_encoder.", "mask_decoder."), keep_only=True,
)
_SPACE = dict(repo_id="HarborYuan/ovsam", repo_type="space")
_MODELS = dict(repo_id="HarborYuan/ovsam_models")

NECK_SPACE = WeightFile(
    role="neck", filename="sam2clip_vith_rn50.pth", license=LICENSE_OVSAM,
    path_in_repo="models/sam2clip_vith_rn50.pth",
    sha256="f2b14b8e480626cffc815a7262297731ee1372c87d054836daad5148f636cfeb", size=536_408_050,
    rules=(KeyRule("neck_student.", "neck."),), **_SPACE,
)
HEAD_SPACE = WeightFile(
    role="head", filename="ovsam_R50x16_lvisnorare.pth", license=LICENSE_OVSAM,
    path_in_repo="models/ovsam_R50x16_lvisnorare.pth",
    sha256="7120eb3987b09bd7f90e0447d049af171bb1404aada1df1375b186f14447dbd6", size=16_195_476,
    rules=(KeyRule("mask_decoder.", "mask_decoder."),), **_SPACE,
)
# Listed after the head: its roi_conv overrides the head file's (upstream demo, quirk Q5).
FPN_SPACE = WeightFile(
    role="fpn", filename="R50x16_fpn_lvis_norare_v3det.pth", license=LICENSE_OVSAM,
    path_in_repo="models/R50x16_fpn_lvis_norare_v3det.pth",
    sha256="052f6aa7f41c7aa1e3bbf3b9f6527dd25004e1341bd3f7e1586198c9ea699f20", size=16_157_980,
    rules=(KeyRule("fpn_neck.", "fpn_neck."), KeyRule("roi_conv.", "mask_decoder.roi_conv.")), **_SPACE,
)
CLASSIFIER_LVIS_SPACE = WeightFile(
    role="classifier", filename="RN50x16_LVISV1Dataset.pth", license=LICENSE_OVSAM,
    path_in_repo="models/RN50x16_LVISV1Dataset.pth",
    sha256="2c01a464e8c7ebb47c6c8c07199a0d3774ebb8959880da50a6de1dc992dadb59", size=7_392_482,
    rules=(KeyRule("", "", target="classifier"),), **_SPACE,
)
NECK_MODELS = WeightFile(
    role="neck", filename="sam2clip_vith_rn50x16.pth", license=LICENSE_OVSAM,
    rules=(KeyRule("neck_student.", "neck."),), **_MODELS,
)
CLIP2SAM_LVIS = WeightFile(
    role="clip2sam", filename="clip2sam_lvis_rn50x16.pth", license=LICENSE_OVSAM,
    rules=(KeyRule("fpn_neck.", "fpn_neck."), KeyRule("mask_decoder.", "mask_decoder.")), **_MODELS,
)
CLIP2SAM_COCO = WeightFile(
    role="clip2sam", filename="clip2sam_coco_rn50x16.pth", license=LICENSE_OVSAM,
    rules=(KeyRule("fpn_neck.", "fpn_neck."), KeyRule("mask_decoder.", "mask_decoder.")), **_MODELS,
)

_REGISTRY: Dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    """Add a model to the registry (e.g. your own fine-tuned files)."""
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {spec.name!r} is already registered; pass overwrite=True to replace it")
    if spec.arch not in ARCHS:
        raise ValueError(f"unknown architecture {spec.arch!r}; choose one of {sorted(ARCHS)}")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_model(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_models() -> List[str]:
    """Names of the registered models."""
    return sorted(_REGISTRY)


def get_model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model; a clear error lists the choices."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())} "
                       "(see `ovsam models`)") from None


register_model(ModelSpec(
    name="ovsam-lvis", arch="rn50x16",
    description="The public OVSAM demo (Hugging Face Space): LVIS-norare head, V3Det FPN/roi_conv, "
                "recognition by the CLIP2SAM head.",
    files=(CLIP_OPENAI, SAM_VIT_H, NECK_SPACE, HEAD_SPACE, FPN_SPACE, CLASSIFIER_LVIS_SPACE),
    mode="head", vocabulary="lvis",
))
register_model(ModelSpec(
    name="ovsam-lvis-eval", arch="rn50x16",
    description="The paper's LVIS evaluation model (clip2sam_lvis_rn50x16) with frozen-CLIP fusion.",
    files=(CLIP_OPENAI, SAM_VIT_H, NECK_MODELS, CLIP2SAM_LVIS),
    mode="fused", vocabulary="lvis",
))
register_model(ModelSpec(
    name="ovsam-coco-eval", arch="rn50x16-roi12",
    description="The paper's COCO open-vocabulary (48/17) evaluation model with frozen-CLIP fusion.",
    files=(CLIP_OPENAI, SAM_VIT_H, NECK_MODELS, CLIP2SAM_COCO),
    mode="fused", vocabulary="coco",
))
# A tiny architecture with random weights: same code paths, for tests and CI.
register_model(ModelSpec(
    name="ovsam-test", arch="test",
    description="Tiny random-init architecture for tests (no download; weights are seeded).",
    files=(), mode="head", vocabulary="coco",
))

# A small model trained by our own pipeline on synthetic shapes: shipped in the package.
register_model(ModelSpec(
    name="ovsam-shapes", arch="shapes",
    description="Demo model trained by `ovsam train clip2sam configs/demo_shapes.yaml` on `ovsam synth` "
                "scenes: knows ONLY the 8 synthetic shapes (red circle, green square, ...). Shipped, "
                "no download.",
    files=(), mode="head", vocabulary="shapes",
    packaged="ovsam-shapes.safetensors",
    packaged_sha256="6d94562af9c1b534b0dbd788cfa538fa1077791d27518cc829042111bcaba65b",  # the shipped file (model card)
    packaged_license=LICENSE_OVSAM_OWN,
    card="ovsam-shapes.md",
))
