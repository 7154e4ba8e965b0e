"""Box geometry shared by the loader, the RSA op, the VG head and the metrics.

Boxes are (x1, y1, x2, y2) in pixels, as the detector gives them. Two conventions measure
a box's size: *pixel* (w = x2 - x1 + 1: x2 is the index of the last pixel, as in the
reference implementation's loader and Faster R-CNN) and *continuous* (w = x2 - x1). The
relation features take either (`objects(box_convention = ...)`, default pixel, so a
spec computes the reference's function); the VG deltas, IoU and clipping below are
continuous.
"""

from __future__ import annotations

import torch
from torch import Tensor

DELTA_STD = (0.1, 0.1, 0.2, 0.2)  # Fast R-CNN delta normalisation (REFERENCE.md, VG)
BOX_CONVENTIONS = ("pixel", "continuous")  # what `relation_features` accepts; pixel first


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=1e-3)
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=1e-3)
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def relation_features(boxes: Tensor, convention: str = "pixel") -> Tensor:
    """(B, n, 4) boxes -> (B, n, n, 4) relation features R (paper §3.1, RSA).

    R[b, i, j] = [log max(|cx_i-cx_j|/w_i, 1e-3), log max(|cy_i-cy_j|/h_i, 1e-3),
    log(w_i/w_j), log(h_i/h_j)] with cx = (x1 + x2) / 2: the reference loader's order and
    orientation (the paper's footnote writes the size ratios the other way round).
    `convention` "pixel" takes w = x2 - x1 + 1 as the reference does (its released
    weights expect it: without the +1 its logits move by ~5e-3); "continuous" takes
    w = x2 - x1. Sizes are floored at 1e-3 so that degenerate boxes stay finite; padded
    boxes give finite values, and the attention masks keep them out of every result.
    """
    if convention not in BOX_CONVENTIONS:
        raise ValueError(f"box convention {convention!r} is not one of {BOX_CONVENTIONS}")
    extra = 1.0 if convention == "pixel" else 0.0
    cx, cy = (boxes[..., 0] + boxes[..., 2]) * 0.5, (boxes[..., 1] + boxes[..., 3]) * 0.5
    w = (boxes[..., 2] - boxes[..., 0] + extra).clamp(min=1e-3)
    h = (boxes[..., 3] - boxes[..., 1] + extra).clamp(min=1e-3)
    dx = (cx[..., :, None] - cx[..., None, :]).abs() / w[..., :, None]
    dy = (cy[..., :, None] - cy[..., None, :]).abs() / h[..., :, None]
    dw = w[..., :, None] / w[..., None, :]
    dh = h[..., :, None] / h[..., None, :]
    return torch.stack([dx.clamp(min=1e-3).log(), dy.clamp(min=1e-3).log(), dw.log(), dh.log()], -1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU: (..., n, 4) x (..., m, 4) -> (..., n, m)."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def encode_deltas(proposals: Tensor, targets: Tensor) -> Tensor:
    """Fast R-CNN deltas (dx, dy, log dw, log dh) / DELTA_STD from proposals to targets."""
    px, py, pw, ph = _centre_size(proposals)
    tx, ty, tw, th = _centre_size(targets)
    d = torch.stack([(tx - px) / pw, (ty - py) / ph, (tw / pw).log(), (th / ph).log()], -1)
    return d / d.new_tensor(DELTA_STD)


def decode_deltas(proposals: Tensor, deltas: Tensor) -> Tensor:
    """Inverse of `encode_deltas`: apply normalised deltas to proposals -> boxes."""
    px, py, pw, ph = _centre_size(proposals)
    d = deltas * deltas.new_tensor(DELTA_STD)
    cx, cy = px + d[..., 0] * pw, py + d[..., 1] * ph
    w, h = pw * d[..., 2].clamp(max=4.0).exp(), ph * d[..., 3].clamp(max=4.0).exp()
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def clip_boxes(boxes: Tensor, image_size: Tensor) -> Tensor:
    """Clip (..., 4) boxes to images of size (..., 2) = (w, h)."""
    w, h = image_size[..., 0:1], image_size[..., 1:2]
    x = boxes[..., 0::2].clamp(min=0).minimum(w)
    y = boxes[..., 1::2].clamp(min=0).minimum(h)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)
