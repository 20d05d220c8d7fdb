"""Decoding image files once, at a bounded size, with consistent modes.

Images are read the way torchvision's default loader (`ImageFolder`'s pil_loader: `Image.open` then
`convert("RGB")`) reads them, because that is what the model sees: palette and RGBA become RGB, the
alpha channel is dropped; grayscale stays one channel until we know whether the dataset holds colour
images too (data.files). What that reading changes is recorded (DecodeFacts), for input-fidelity to
say: 16- and 32-bit integer and float images are clipped to 0..255 by Pillow's conversion (not
scaled: a 12-bit scan becomes almost white) and NaN in a float image becomes 0; the EXIF orientation
tag is not applied (photos a viewer shows upright reach the model rotated); of an animated GIF or
a multi-page TIFF only the first frame is read.
Images whose longer side exceeds `max_side` are downscaled on decode (JPEG's DCT scaling through
Pillow's draft mode makes that cheap); the native size is recorded for the checks that need it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # more than 8 bits per pixel
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class DecodeFacts:
    """What reading a file as torchvision's loader does changed, beyond the pixels themselves."""
    clipped: float = 0.0  # share of pixels outside 0..255 that the conversion to 8 bits clipped
    nonfinite: int = 0  # NaN/Inf pixels of a float image (0 after the conversion)
    orientation: int = 0  # EXIF orientation (0 none, 1 upright, 2-8 rotated or mirrored), not applied
    frames: int = 1


class DecodeError(Exception):
    """One file could not be decoded; the audit skips it and input-fidelity reports it."""


def decode_image(path: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int], str, DecodeFacts]:
    """(HWC array, native (H, W), original mode, what decoding changed) or DecodeError with a short reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # opening a FIFO blocks forever; a device never ends
            raise DecodeError("not a regular file (a FIFO, device or socket)")
        if info.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        with Image.open(path) as img:
            mode = img.mode
            native = (img.height, img.width)
            if max(native) > max_side:
                img.draft("RGB" if mode not in GRAY_MODES else "L", (max_side, max_side))
            img.load()
            facts = _facts(img)
            img = _convert_mode(img)
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            array = np.array(img)  # a writable copy (torch refuses read-only buffers)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:  # a header declaring billions of pixels
        raise DecodeError(f"too large to decode safely: {exc}") from None
    except PermissionError:
        raise DecodeError("permission denied") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated data, bad headers, decoder errors
        raise DecodeError(f"cannot decode: {exc}") from None
    except MemoryError:
        raise DecodeError("too large to decode in memory") from None
    except Exception as exc:  # any other decoder failure is this file's problem, not the audit's
        raise DecodeError(f"cannot decode: {type(exc).__name__}: {exc}") from None
    if array.ndim == 2:
        array = array[..., None]
    return np.ascontiguousarray(array), native, mode, facts


def _facts(img) -> DecodeFacts:
    """Clipping and NaN of wide modes (measured on the loaded pixels), EXIF orientation, frames."""
    clipped, nonfinite = 0.0, 0
    if img.mode in WIDE_MODES:
        wide = np.asarray(img, dtype=np.float64)
        finite = np.isfinite(wide)
        nonfinite = int(wide.size - finite.sum())
        clipped = float(np.mean(finite & ((wide > 255) | (wide < 0)))) if wide.size else 0.0
    try:
        orientation = int(img.getexif().get(EXIF_ORIENTATION, 0) or 0)
    except Exception:  # a damaged EXIF block is not a damaged image
        orientation = 0
    return DecodeFacts(clipped, nonfinite, orientation if 0 <= orientation <= 8 else 0,
                       int(getattr(img, "n_frames", 1) or 1))


def _convert_mode(img):
    """Pillow's own conversion, as torchvision's loader does: wide modes are clipped, not scaled."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in GRAY_MODES:
        return img.convert("L")
    return img.convert("RGB")
