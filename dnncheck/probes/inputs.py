"""The tensor that enters the model: resized to image_size, scaled and normalised as configured.

`normalize` (DESIGN section 2) says what the user's pipeline does:
- "none": values used as given (uint8 images stay 0..255);
- "zscore" / "minmax": per channel (images) or feature (tables), fitted on train only;
- {mean, std}: applied as given; integer images are scaled to [0, 1] first (torchvision's convention);
- "auto": integer images are scaled to [0, 1] and z-scored per channel with train statistics;
  float arrays and tables are used as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dnncheck.errors import UserError


def raw_tensor(x, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Float32 tensor in the data's own value scale: N,C,H,W resized to image_size, or N,F."""
    if image_size is None:  # table
        return torch.as_tensor(np.asarray(x, dtype=np.float32))
    if hasattr(x, "resized"):  # image files: decoded and resized in the data pass's workers
        return x.resized(image_size)
    if isinstance(x, np.ndarray):
        return resize_batch(torch.from_numpy(x).permute(0, 3, 1, 2).float(), image_size)
    return torch.cat([resize_batch(torch.from_numpy(im).permute(2, 0, 1)[None].float(), image_size) for im in x]) \
        if x else torch.empty(0)


KEPT_FLOAT32_BYTES = 64 * 2**20  # a fed image view larger than this is kept in float16 (kept())
FLOAT16_SAFE = 2.0**15  # float16's largest finite value is 65504: values beyond half of it stay float32


def large_view(t: torch.Tensor) -> bool:
    """An image view whose float32 copy exceeds KEPT_FLOAT32_BYTES (224-px photos by the hundred, not
    digits or MNIST): where memory, more than seconds, decides how the audit holds and computes things."""
    return t.ndim == 4 and t.numel() * 4 > KEPT_FLOAT32_BYTES


def kept(t: torch.Tensor) -> torch.Tensor:
    """The fed tensor of a view as it is held between checks: an image view whose float32 copy
    exceeds KEPT_FLOAT32_BYTES in float16, half the memory (the two 224-px views of 445 samples are
    0.25 GB instead of 0.5); tables and small views (digits, MNIST) unchanged.

    float16 keeps 11 significant bits: a normalised pixel near 2.5 is held to within 0.001, under a
    tenth of one step of an 8-bit image after ImageNet normalisation (1/255/0.229 = 0.017), and
    non-finite values stay non-finite. Values beyond FLOAT16_SAFE keep float32. Whatever reads a kept
    tensor casts back to float32: the model through models.build.accepts_kept_inputs, statistics
    per chunk in float64, figures through Normalizer.invert."""
    if t.dtype != torch.float32 or not large_view(t):
        return t
    if any(bool(((chunk.abs() >= FLOAT16_SAFE) & torch.isfinite(chunk)).any()) for chunk in torch.split(t, 64)):
        return t
    return t.half()


def float32_copy(t: torch.Tensor) -> torch.Tensor:
    """A float32 tensor the caller owns: a kept float16 view converted, else a clone."""
    return t.float() if t.dtype != torch.float32 else t.clone()


def resize_batch(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(batch.shape[-2:]) == tuple(size):
        return batch.contiguous()
    out = []
    for chunk in torch.split(batch, 2048):  # bounded temporary memory
        out.append(F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out)


@dataclass(frozen=True)
class Normalizer:
    mode: str  # what was applied: none | scale | zscore | minmax | given
    scale: float | None  # integer images divided by this first
    shift: torch.Tensor | None  # per channel/feature
    divisor: torch.Tensor | None

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """A new tensor (or `t` itself for "none"); one copy made, the rest in place on it, so
        normalising a view costs one view's memory, not three."""
        out = t / self.scale if self.scale else None
        if self.shift is not None:
            shape = (1, -1) + (1,) * (t.ndim - 2)
            out = t - self.shift.view(shape) if out is None else out.sub_(self.shift.view(shape))
            out.div_(self.divisor.view(shape))
        return t if out is None else out

    def invert(self, t: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Normalised inputs back in the data's own scale (0..255 for uint8 images), for pictures that
        look like the user's images. `inplace` (a float tensor the caller owns): no copy."""
        out = t if inplace else float32_copy(t)
        if self.shift is not None:
            shape = (1, -1) + (1,) * (t.ndim - 2)
            out.mul_(self.divisor.view(shape)).add_(self.shift.view(shape))
        return out.mul_(self.scale) if self.scale else out

    def apply_inplace(self, t: torch.Tensor) -> torch.Tensor:
        """self(t) computed in `t` itself (a float tensor the caller owns)."""
        if self.scale:
            t.div_(self.scale)
        if self.shift is not None:
            shape = (1, -1) + (1,) * (t.ndim - 2)
            t.sub_(self.shift.view(shape)).div_(self.divisor.view(shape))
        return t

    def describe(self) -> dict:
        d = {"mode": self.mode, "fitted_on": "train" if self.mode in ("zscore", "minmax") else None}
        if self.scale:
            d["scaled_by"] = self.scale
        if self.shift is not None:
            d["shift"] = [round(float(v), 6) for v in self.shift]
            d["divisor"] = [round(float(v), 6) for v in self.divisor]
        return d


def check_normalize_width(setting, width: int, is_image: bool) -> None:
    """A given {mean, std} must hold one value per channel (images) or feature (tables): UserError
    otherwise, raised before any check runs (Context.prepare) as well as when fitting."""
    if not isinstance(setting, dict):
        return
    what = "channel" if is_image else "feature"
    for key in ("mean", "std"):
        if len(setting[key]) != width:
            raise UserError(f"data.normalize: {key} has {len(setting[key])} values but the data has {width} {what}s; "
                            f"give one per {what}")


STATS_ROWS_VALUES = 2**24  # input values per chunk when fitting (64 MB as float32)


def _unit_stats(train_raw: torch.Tensor, pre: float | None, dims) -> tuple:
    """Per channel (images) or feature (tables): min, max, mean and sample std (n - 1) of train_raw
    divided by `pre`, non-finite values read as 0; summed in float64 a chunk of rows at a time, so
    fitting never copies the whole view (at 224 px the copies of 445 photos peaked at +0.9 GB)."""
    rows = max(1, STATS_ROWS_VALUES // max(1, train_raw[0].numel())) if len(train_raw) else 1
    lo = hi = total = squares = None
    count = 0
    for chunk in torch.split(train_raw, rows):
        values = chunk.double() / pre if pre else chunk.double()
        values = torch.where(torch.isfinite(values), values, 0.0)
        parts = (values.amin(dim=dims), values.amax(dim=dims), values.sum(dim=dims), (values * values).sum(dim=dims))
        lo = parts[0] if lo is None else torch.minimum(lo, parts[0])
        hi = parts[1] if hi is None else torch.maximum(hi, parts[1])
        total = parts[2] if total is None else total + parts[2]
        squares = parts[3] if squares is None else squares + parts[3]
        count += values.numel() // values.shape[1]  # values per channel or feature in this chunk
    mean = total / count
    var = torch.clamp((squares - count * mean * mean) / max(1, count - 1), min=0.0)
    return lo.float(), hi.float(), mean.float(), var.sqrt().float()


def fit_normalizer(setting, train_raw: torch.Tensor, scale: float | None, is_image: bool) -> Normalizer:
    """Fit on the training split only, as the user's pipeline should."""
    dims = (0, 2, 3) if is_image else (0,)
    if setting == "none":
        return Normalizer("none", None, None, None)
    if isinstance(setting, dict):
        check_normalize_width(setting, train_raw.shape[1], is_image)
        mean = torch.tensor(setting["mean"], dtype=torch.float32)
        std = torch.tensor(setting["std"], dtype=torch.float32)
        return Normalizer("given", scale if is_image else None, mean, std)
    if setting == "auto" and (not is_image or scale is None):
        return Normalizer("none", None, None, None)
    pre = scale if setting == "auto" else None
    lo, hi, mean, std = _unit_stats(train_raw, pre, dims)
    if setting == "minmax":
        span = hi - lo
        return Normalizer("minmax", pre, lo, torch.where(span > 0, span, torch.ones_like(span)))
    return Normalizer("zscore", pre, mean, torch.where(std > 1e-8, std, torch.ones_like(std)))
