"""ONNX export of OVSAM's per-prompt decoder (prompt encoder + CLIP2SAM head + recognition).

The image encoder (CLIP trunk, SAM2CLIP neck, FPN) runs once per image, in PyTorch or any
other runtime; its outputs are the inputs of the exported graph, together with the prompts and
a text classifier. This is the split that SAM's browser/CPU decoders use (Label Studio, CVAT):
the heavy encoder on a server, the light decoder wherever the clicks happen.

Prompt convention (SAM's ONNX convention, chosen because it is *exactly* how
:meth:`~ovsam_core.modeling.ovsam.OVSAM.embed_prompts` embeds prompts):

* every prompt is a row of K points ``point_coords (N, K, 2)`` (x, y in the model frame, i.e.
  pixels of the resized and bottom/right-padded ``image_size`` input, 1024 upstream) with labels
  ``point_labels (N, K)``: ``1`` positive point, ``0`` negative point, ``2`` top-left box corner
  ``(x0, y0)``, ``3`` bottom-right box corner ``(x1, y1)``, ``-1`` padding point (coordinates
  ignored);
* a box is passed as its two corners labelled 2 and 3 **after** the points: SAM embeds a box
  as two corner points plus ``point_embeddings[2]`` / ``[3]``, so this is the same arithmetic;
* without a box, append **one** padding point ``(0, 0)`` labelled -1 (SAM and upstream do
  exactly this); with a box, append none.

:func:`prompts_to_points` builds these arrays from ``decode``-style points/labels/boxes. All
rows of one call share K. Rows padded with *extra* -1 points (to batch prompts of different
sizes) are valid input but are not bit-identical to decoding them alone: each extra -1 point is
one more "not a point" token the decoder attends to (as in SAM's ONNX model).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.fusion import fuse_logits
from ..modeling.ovsam import FPN_STRIDES, OVSAM, clip_branch_logits

#: Recognition modes of :class:`OnnxDecoder` (see :class:`~ovsam_core.modeling.ovsam.OVSAM`).
DECODER_MODES = ("head", "fused")

_FEATURE_INPUTS = ["image_embedding", "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"]
_PROMPT_INPUTS = ["point_coords", "point_labels", "classifier"]
_FUSED_INPUTS = ["c5", "base", "clip_boxes"]
_OUTPUTS = ["mask_logits", "class_logits", "roi_boxes"]

_INSTALL_HINT = "ONNX export needs onnx and onnxruntime: pip install 'ovsam[onnx]'"


def decoder_input_names(mode: str = "head") -> List[str]:
    """Names (in order) of the exported graph's inputs for ``mode``."""
    _check_mode(mode)
    return _FEATURE_INPUTS + _PROMPT_INPUTS + (_FUSED_INPUTS if mode == "fused" else [])


def decoder_output_names() -> List[str]:
    """Names (in order) of the exported graph's outputs."""
    return list(_OUTPUTS)


def _check_mode(mode: str) -> None:
    if mode not in DECODER_MODES:
        raise ValueError(f"mode must be one of {DECODER_MODES}, got {mode!r}")


def prompts_to_points(
    points: Optional[torch.Tensor] = None,
    point_labels: Optional[torch.Tensor] = None,
    boxes: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Encode ``decode``-style prompts in the exported graph's point convention.

    Args:
        points: (N, K, 2) x, y in the model frame, or None.
        point_labels: (N, K), 1 positive / 0 negative; None = all positive (as
            :meth:`OVSAM.embed_prompts`).
        boxes: (N, 4) x0, y0, x1, y1 in the model frame, or None.
    Returns:
        ``point_coords (N, K', 2)`` float32 and ``point_labels (N, K')`` float32: the points,
        then either the box corners (labels 2, 3) or one padding point (0, 0) labelled -1.
    """
    if points is None and boxes is None:
        raise ValueError("a prompt needs at least one point or a box")
    ref = points if points is not None else boxes
    n = ref.shape[0]
    coords, labels = [], []
    if points is not None:
        coords.append(points.to(torch.float32))
        if point_labels is None:
            point_labels = torch.ones(points.shape[:2])
        labels.append(point_labels.to(torch.float32))
    if boxes is None:
        coords.append(torch.zeros((n, 1, 2)))
        labels.append(torch.full((n, 1), -1.0))
    else:
        coords.append(boxes.to(torch.float32).reshape(n, 2, 2))
        labels.append(torch.tensor([[2.0, 3.0]]).expand(n, 2))
    return torch.cat(coords, dim=1), torch.cat(labels, dim=1)


class OnnxDecoder(nn.Module):
    """Tensor-only, export-friendly wrapper of OVSAM's per-prompt path.

    Reuses the model's sub-modules and functions (``OVSAMHead.predict_masks`` /
    ``recognize`` with the static multi-level RoIAlign, :func:`clip_branch_logits`, :func:`fuse_logits`, ``OVSAM.mask_valid``).
    Only the prompt embedding is re-written, with identical arithmetic: SAM's ``_embed_points``
    uses boolean-mask in-place writes and a Python ``pad`` flag; here the label embedding is a
    gather from the table ``[not_a_point, neg, pos, corner0, corner1]`` indexed by ``label + 1``.

    Args:
        model: an :class:`OVSAM` (weights loaded). Only the per-prompt modules are used.
        mode: ``"head"`` (class logits of the CLIP2SAM head) or ``"fused"`` (fused
            log-scores with the frozen-CLIP branch on C5, spec §2.6).
    """

    def __init__(self, model: OVSAM, mode: str = "head") -> None:
        super().__init__()
        _check_mode(mode)
        self.mode = mode
        cfg = model.cfg
        self.cfg = cfg
        self.pe = model.pe
        self.head = model.mask_decoder
        self.clip_pool = model.backbone.head if mode == "fused" else None
        self.strides = tuple(FPN_STRIDES)
        with torch.no_grad():
            # Deterministic constants, precomputed so that the runtime need not redo sin/cos.
            self.register_buffer("image_pe", self.pe.get_dense_pe().detach().clone(), persistent=False)
        h, w = self.pe.input_image_size
        self.register_buffer("frame_wh", torch.tensor([float(w), float(h)]), persistent=False)

    # ------------------------------------------------------------------ pieces
    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """(N, K, D) sparse prompt tokens; the arithmetic of SAM's ``_embed_points``/``_embed_boxes``."""
        pe = self.pe
        coords = (point_coords + 0.5) / self.frame_wh  # pixel centre, normalised to [0, 1]
        emb = pe.pe_layer._pe_encoding(coords.to(torch.float32))
        table = torch.cat([pe.not_a_point_embed.weight] + [e.weight for e in pe.point_embeddings], dim=0)
        idx = (point_labels + 1).clamp(0, table.shape[0] - 1).to(torch.int64)
        pad = (point_labels == -1)[..., None]
        return torch.where(pad, torch.zeros_like(emb), emb) + table[idx]

    def clip_logits(self, c5: torch.Tensor, boxes: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        """(N, C + 1) frozen-CLIP logits (:func:`clip_branch_logits`)."""
        return clip_branch_logits(self.clip_pool, c5, boxes, classifier, self.cfg.clip_pool_size)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        image_embedding: torch.Tensor,
        fpn_p2: torch.Tensor,
        fpn_p3: torch.Tensor,
        fpn_p4: torch.Tensor,
        fpn_p5: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        classifier: torch.Tensor,
        c5: Optional[torch.Tensor] = None,
        base: Optional[torch.Tensor] = None,
        clip_boxes: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Segment and recognise N prompts of one image; see :func:`export_decoder_onnx`."""
        sparse = self.embed_points(point_coords, point_labels)
        grid_h, grid_w = image_embedding.shape[-2:]
        dense = self.pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(sparse.shape[0], -1, grid_h, grid_w)
        masks = self.head.predict_masks(image_embedding, self.image_pe, sparse, dense)
        out = self.head.recognize(masks, grid_w * 16, [fpn_p2, fpn_p3, fpn_p4, fpn_p5], self.strides,
                                 static=True)
        boxes = out.roi_boxes
        logits = OVSAM.head_logits(out, classifier)
        if self.mode == "fused":
            if c5 is None or base is None or clip_boxes is None:
                raise ValueError("mode 'fused' needs c5, base and clip_boxes")
            # A clip box with a negative coordinate means "use the mask's box".
            use_mask_box = (clip_boxes < 0).any(dim=1, keepdim=True)
            cboxes = torch.where(use_mask_box, boxes, clip_boxes)
            c = self.clip_logits(c5, cboxes, classifier)
            valid = OVSAM.mask_valid(out, c5.shape[-1])
            logits = fuse_logits(logits, c, base, valid)
        return masks, logits, boxes


def example_inputs(
    model: OVSAM,
    mode: str = "head",
    *,
    num_prompts: int = 2,
    num_points: int = 3,
    num_classes: int = 5,
    num_prototypes: int = 2,
    seed: int = 0,
) -> Tuple[torch.Tensor, ...]:
    """Random inputs of the right shapes for :class:`OnnxDecoder` (tracing, smoke tests).

    The defaults avoid sizes 0 and 1 and equal sizes, so that an exporter cannot specialise
    a dynamic axis to a constant.
    """
    _check_mode(mode)
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    s, d = cfg.image_size, cfg.prompt_dim
    feats = [torch.randn(1, d, s // 16, s // 16, generator=g)]
    feats += [torch.randn(1, d, s // st, s // st, generator=g) for st in FPN_STRIDES]
    coords = torch.rand(num_prompts, num_points, 2, generator=g) * s
    labels = torch.ones(num_prompts, num_points)
    labels[:, -1] = -1.0
    cls = F.normalize(torch.randn(num_classes, num_prototypes, cfg.clip_embed_dim, generator=g), dim=-1)
    args: Tuple[torch.Tensor, ...] = (*feats, coords, labels, cls)
    if mode == "fused":
        c5 = torch.randn(1, cfg.backbone_channels[-1], s // 32, s // 32, generator=g)
        base = (torch.arange(num_classes) % 2 == 0).to(torch.float32)
        boxes = torch.tensor([[0.1, 0.2, 0.6, 0.7]]).repeat(num_prompts, 1) * s
        args = (*args, c5, base, boxes)
    return args


def export_decoder_onnx(
    model: OVSAM,
    path: Union[str, Path],
    *,
    mode: str = "head",
    opset: int = 17,
    num_classes_dynamic: bool = True,
    num_classes: Optional[int] = None,
    dynamo: bool = False,
    check: bool = True,
) -> Path:
    """Export OVSAM's per-prompt decoder to an ONNX file.

    The graph takes the image features of **one** image (from
    :meth:`OVSAM.extract_features`) plus N prompts and a text classifier, and runs the prompt
    encoder, the CLIP2SAM mask decoder and the recognition (``mode``). Every coordinate is in
    the **model frame**: pixels of the resized, bottom/right-padded ``S x S`` input
    (``S = cfg.image_size``, 1024 upstream; ``h = w = S/16``).

    Inputs (float32):

    * ``image_embedding`` (1, D, S/16, S/16): ``features.embedding`` (D = 256 upstream).
    * ``fpn_p2`` .. ``fpn_p5`` (1, D, S/s, S/s), s = 4, 8, 16, 32: ``features.fpn``.
    * ``point_coords`` (N, K, 2): x, y per point.
    * ``point_labels`` (N, K): 1 positive, 0 negative, 2 / 3 box top-left / bottom-right corner,
      -1 padding point; without a box each row ends with one (0, 0) point labelled -1, with a
      box it ends with the two corners (see the module docstring and
      :func:`prompts_to_points`).
    * ``classifier`` (C, P, Dc): L2-normalised class prototypes (``LoadedModel.classifier``,
      Dc = 768 upstream), max over the P synonyms.
    * mode ``"fused"`` only: ``c5`` (1, C5, S/32, S/32) = ``features.c5``; ``base`` (C,) 1.0 for
      base (seen) classes, 0.0 for novel ones; ``clip_boxes`` (N, 4) x0, y0, x1, y1 RoIs of the
      frozen-CLIP branch (a row with a negative coordinate, e.g. all -1, takes the mask's box
      ``roi_boxes`` instead). To mark classes as neither base nor novel (upstream COCO), set
      their fused scores to -1000 afterwards.

    Outputs:

    * ``mask_logits`` (N, 1, S/4, S/4): low-resolution mask logits over the padded frame.
    * ``class_logits`` (N, C + 1): head logits (mode ``"head"``) or fused log-scores (mode
      ``"fused"``), background last.
    * ``roi_boxes`` (N, 4): x0, y0, x1, y1 of the predicted mask's tight box (the head's RoI;
      all 0 for an empty mask).

    Dynamic axes: N, K, P and, with ``num_classes_dynamic``, C. Everything else is fixed by
    the architecture.

    Args:
        model: the OVSAM model (e.g. ``load_model(name).model``).
        path: output ``.onnx`` file; parent directories are created.
        mode: ``"head"`` or ``"fused"``.
        opset: ONNX opset (>= 16, for RoiAlign's ``coordinate_transformation_mode=half_pixel``,
            which is torchvision's ``aligned=True``).
        num_classes_dynamic: make C a dynamic axis; otherwise ``num_classes`` is baked in.
        num_classes: C of the traced example (required when ``num_classes_dynamic`` is False).
        dynamo: use the ``torch.export``-based exporter (needs ``onnxscript``, ``opset >= 18``)
            instead of the TorchScript one. Both give the same numbers; the TorchScript exporter
            (the default here) needs no extra package and writes opset 17, but is deprecated
            since torch 2.9.
        check: run ``onnx.checker`` on the written file.
    Returns:
        The path written.
    Raises:
        ImportError: onnx is not installed.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(_INSTALL_HINT) from e
    _check_mode(mode)
    if opset < 16:
        raise ValueError("opset must be >= 16 (RoiAlign half_pixel = torchvision aligned=True)")
    if dynamo and opset < 18:
        raise ValueError("the torch.export-based exporter (dynamo=True) writes opset >= 18")
    if not num_classes_dynamic and num_classes is None:
        raise ValueError("num_classes is required when num_classes_dynamic is False")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    wrapper = OnnxDecoder(model, mode).eval()
    args = example_inputs(model, mode, num_classes=num_classes or 5)
    in_names = decoder_input_names(mode)
    axes: Dict[str, Dict[int, str]] = {
        "point_coords": {0: "N", 1: "K"},
        "point_labels": {0: "N", 1: "K"},
        "classifier": {1: "P"},
        "mask_logits": {0: "N"},
        "class_logits": {0: "N"},
        "roi_boxes": {0: "N"},
    }
    if mode == "fused":
        axes["clip_boxes"] = {0: "N"}
    if num_classes_dynamic:
        axes["classifier"][0] = "C"
        axes["class_logits"][1] = "C+1"
        if mode == "fused":
            axes["base"] = {0: "C"}

    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks and shape-derived Python numbers (torchvision's box-shape assert, SAM's
        # sqrt(head dim), the logit scale) become constants: they are fixed by the architecture.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*The feature will be removed.*")
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        if dynamo:
            _export_dynamo(wrapper, args, path, in_names, axes, opset)
        else:
            torch.onnx.export(
                wrapper, args, str(path), input_names=in_names, output_names=decoder_output_names(),
                dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
            )
    if check:
        onnx.checker.check_model(str(path))
    return path


def _export_dynamo(
    wrapper: OnnxDecoder,
    args: Tuple[torch.Tensor, ...],
    path: Path,
    in_names: List[str],
    axes: Dict[str, Dict[int, str]],
    opset: int,
) -> None:
    """``torch.export`` + ONNX translation (needs onnxscript)."""
    dims: Dict[str, torch.export.Dim] = {}
    shapes = []
    for name in in_names:
        spec = axes.get(name)
        if spec is None:
            shapes.append(None)
            continue
        entry = {}
        for ax, label in spec.items():
            entry[ax] = dims.setdefault(label, torch.export.Dim(label.replace("+", "_"), min=1))
        shapes.append(entry)
    prog = torch.onnx.export(
        wrapper, args, input_names=in_names, output_names=decoder_output_names(),
        dynamic_shapes=tuple(shapes), opset_version=opset, dynamo=True, external_data=False,
        verbose=False,
    )
    prog.save(str(path), external_data=False)
