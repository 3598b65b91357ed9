"""Exports of OVSAM to other runtimes.

:mod:`ovsam_core.export.onnx` exports the per-prompt part (prompt encoder, CLIP2SAM mask
decoder and recognition) to ONNX. Importing this package never imports ``onnx``.
"""
from __future__ import annotations

from .onnx import (DECODER_MODES, OnnxDecoder, decoder_input_names, decoder_output_names,
                   example_inputs, export_decoder_onnx, prompts_to_points)

__all__ = [
    "DECODER_MODES", "OnnxDecoder", "decoder_input_names", "decoder_output_names",
    "example_inputs", "export_decoder_onnx", "prompts_to_points",
]
