"""The pixels a prompt is answered from, read from a viewer's image layers without loading them whole.

:class:`ImageSource`: one grey or RGB layer, or two to three grey layers shown as R, G, B;
8/16-bit, float; n-D stacks (answered plane by plane); numpy, dask, zarr or multiscale pyramids,
of which only the region in use (:class:`ovsam_core.hosts.tiling.Region`) is ever read. Intensities
are mapped to 8 bits through each layer's **contrast limits** (what you see is what the model
gets), or as ``ovsam embed`` does (``intensity="auto"``, percentiles).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .tiling import Region


@dataclass
class ImageChannel:
    """One image layer: its pyramid levels (level 0 first), display contrast and RGB-ness."""

    levels: Sequence[Any]
    contrast_limits: Optional[Tuple[float, float]] = None
    rgb: bool = False
    name: str = "image"


def _dtype_range(dtype: np.dtype) -> Optional[Tuple[float, float]]:
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype.kind == "b":
        return (0.0, 1.0)
    return None


def _to_uint8(x: np.ndarray, limits: Optional[Tuple[float, float]]) -> np.ndarray:
    """Map [lo, hi] to 0..255 (clipped); NaN -> 0. Without limits: the block's finite min/max."""
    if x.dtype == np.uint8 and (limits is None or tuple(limits) == (0.0, 255.0)):
        return x
    if limits is None:
        limits = _dtype_range(x.dtype)
    xf = x.astype(np.float32)
    finite = np.isfinite(xf)
    if limits is None:
        vals = xf[finite]
        limits = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 1.0)
    lo, hi = float(limits[0]), float(limits[1])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    xf -= lo
    xf *= scale
    np.clip(xf, 0, 255, out=xf)
    xf[~finite] = 0
    return np.rint(xf).astype(np.uint8)


class ImageSource:
    """The image a prompt is answered from (see the module doc).

    Args:
        channels: one :class:`ImageChannel` (grey or RGB) or two to three grey channels (R, G, B).
        name: shown in exports (COCO ``file_name``).
    """

    def __init__(self, channels: Sequence[ImageChannel], name: Optional[str] = None) -> None:
        channels = list(channels)
        if not channels:
            raise ValueError("choose an image layer")
        if len(channels) > 3:
            raise ValueError(f"choose at most three image layers (R, G, B), got {len(channels)}")
        if len(channels) > 1 and any(c.rgb for c in channels):
            raise ValueError("an RGB layer cannot be combined with other layers; choose it alone")
        self.channels = channels
        shapes = {self._plane_shape(c) for c in channels}
        if len(shapes) != 1:
            raise ValueError(f"the chosen layers have different shapes {sorted(shapes)}; choose layers of one shape")
        self.shape: Tuple[int, ...] = shapes.pop()
        if len(self.shape) < 2:
            raise ValueError(f"an image needs at least 2 dimensions, got shape {self.shape}")
        self.name = name or channels[0].name

    @staticmethod
    def _plane_shape(c: ImageChannel) -> Tuple[int, ...]:
        s = tuple(int(v) for v in c.levels[0].shape)
        if c.rgb:
            if s[-1] not in (3, 4):
                raise ValueError(f"an RGB layer needs 3 or 4 channels last, got shape {s}")
            s = s[:-1]
        return s

    @classmethod
    def from_array(cls, data, contrast_limits=None, rgb: bool = False, name: str = "image") -> "ImageSource":
        """One array (or a list of pyramid levels, level 0 first)."""
        levels = list(data) if isinstance(data, (list, tuple)) else [data]
        return cls([ImageChannel(levels, contrast_limits, rgb, name)], name)

    @property
    def height(self) -> int:
        return self.shape[-2]

    @property
    def width(self) -> int:
        return self.shape[-1]

    @property
    def lead_shape(self) -> Tuple[int, ...]:
        return self.shape[:-2]

    @property
    def is_multiscale(self) -> bool:
        return all(len(c.levels) > 1 for c in self.channels)

    def level_factors(self) -> List[int]:
        """Integer downsampling factor of each level usable for reading (0 = unusable)."""
        n = min(len(c.levels) for c in self.channels)
        out = []
        for i in range(n):
            facs = set()
            for c in self.channels:
                s = tuple(int(v) for v in c.levels[i].shape)
                s = s[:-1] if c.rgb else s
                if s[:-2] != self.lead_shape:
                    facs.add(0)
                    continue
                fy, fx = self.height / s[-2], self.width / s[-1]
                f = int(round(fy))
                ok = f >= 1 and abs(fy - f) * s[-2] <= f and abs(fx - f) * s[-1] <= f
                facs.add(f if ok else 0)
            out.append(facs.pop() if len(facs) == 1 else 0)
        return out

    def check_plane(self, plane: Sequence[int]) -> Tuple[int, ...]:
        plane = tuple(int(p) for p in plane)
        if len(plane) != len(self.lead_shape):
            raise ValueError(f"plane index {plane} does not match the image's {len(self.lead_shape)} leading axes")
        for p, s in zip(plane, self.lead_shape):
            if not 0 <= p < s:
                raise ValueError(f"plane {plane} is outside the image's leading shape {self.lead_shape}")
        return plane

    def read_raw(self, region: Region) -> List[np.ndarray]:
        """Each channel's pixels of the region, (h, w) or (h, w, 3|4), as stored."""
        out = []
        f = self.level_factors()[region.level] if region.level else 1
        for c in self.channels:
            lvl = c.levels[region.level]
            lh, lw = (lvl.shape[-3], lvl.shape[-2]) if c.rgb else (lvl.shape[-2], lvl.shape[-1])
            s = region.level_stride
            ys = slice(region.y0 // f, min(lh, -(-region.y1 // f)), s)
            xs = slice(region.x0 // f, min(lw, -(-region.x1 // f)), s)
            key = tuple(region.plane) + (ys, xs) + ((slice(None),) if c.rgb else ())
            out.append(np.asarray(lvl[key]))
        return out

    def read_rgb(self, region: Region, intensity: str = "contrast") -> np.ndarray:
        """The region as (h, w, 3) uint8, the model's input."""
        raw = self.read_raw(region)
        if intensity == "auto":
            from ..images import load_image

            if len(raw) == 1:
                arr = raw[0][..., :3] if self.channels[0].rgb else raw[0]
                return np.array(load_image(arr).rgb)
            stack = np.stack([r.astype(np.result_type(*raw)) for r in raw], axis=-1)
            return np.array(load_image(stack, channel_axis=-1, channels=list(range(len(raw)))).rgb)
        planes = []
        for c, r in zip(self.channels, raw):
            lim = tuple(c.contrast_limits) if c.contrast_limits is not None else None
            if c.rgb:
                return np.ascontiguousarray(_to_uint8(r[..., :3], lim))
            planes.append(_to_uint8(r, lim))
        if len(planes) == 1:
            planes = planes * 3
        elif len(planes) == 2:
            planes.append(np.zeros_like(planes[0]))
        return np.ascontiguousarray(np.stack(planes, axis=-1))
