"""Decoding image files once, at a bounded size, with consistent modes.

Modes are converted the way torchvision's default loader does (`convert("RGB")`: palette and RGBA
become RGB, the alpha channel is dropped), except that grayscale stays one channel until we know
whether the dataset holds colour images too (data.files). 16-bit images are scaled to 8 bits.
Images whose longer side exceeds `max_side` are downscaled on decode (JPEG's DCT scaling through
Pillow's draft mode makes that cheap); the native size is recorded for the checks that need it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class DecodeError(Exception):
    """One file could not be decoded; the audit skips it and input-fidelity reports it."""


def decode_image(path: Path, max_side: int) -> tuple[np.ndarray, tuple[int, int], str]:
    """(HWC array, native (H, W), original mode) or DecodeError with a short reason."""
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
    return np.ascontiguousarray(array), native, mode


def _convert_mode(img):
    if img.mode in ("L", "RGB"):
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "I" or wide.max() > 255 else 255.0
        from PIL import Image

        return Image.fromarray(np.clip(np.round(wide / top * 255.0), 0, 255).astype(np.uint8))
    if img.mode in GRAY_MODES:
        return img.convert("L")
    return img.convert("RGB")
