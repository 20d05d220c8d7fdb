"""Local features of a photo for finding its crops, mirror images and rescaled copies.

A global descriptor (the 16x16 thumbnail of records.py) cannot match a 60% crop with its original:
the two thumbnails show different things. Copy-detection systems match local features instead and
verify that enough of them agree on one geometric transform (Douze et al., "The 2021 Image Similarity
Dataset and Challenge"; Philbin et al. 2007 for spatial verification). Here: OpenCV's ORB (Rublee et
al. 2011: FAST corners, oriented BRIEF, 256-bit binary descriptors, invariant to rotation and
tolerant to scale through its pyramid) on the grey image at a longer side of LOCAL_SIDE, once as it
is and once mirrored (ORB is not mirror-invariant), LOCAL_POINTS of each kept in the record.

Only images with a longer side of at least LOCAL_MIN_SIDE get them: below that (digits, MNIST) there
are too few corners, and the aligned correlation of similarity.py is the right tool.
"""

from __future__ import annotations

import numpy as np

LOCAL_SIDE = 256  # the grey image's longer side for detection
LOCAL_POINTS = 64  # keypoints kept per view (strongest first): 64 x 34 bytes x 2 views = 4.4 KB a record
LOCAL_MIN_SIDE = 64
# the detection image's shorter side below this: no keypoints (ORB's 5-level pyramid at 1.3 shrank a
# 20000x20 strip's 256x1 detection image to width 0, and OpenCV's resize asserted; a strip that thin
# holds no 15 px patch anyway). The record says so (kp_skipped).
LOCAL_MIN_SHORT_SIDE = 16
DESCRIPTOR_BYTES = 32

_DETECTOR = None


def _detector():
    """One ORB detector per process (workers included), single-threaded like the rest of the pass."""
    global _DETECTOR
    if _DETECTOR is None:
        import cv2

        cv2.setNumThreads(1)
        # a smaller pyramid step and patch than the defaults: 256 px images, crops down to 60%
        _DETECTOR = cv2.ORB_create(nfeatures=LOCAL_POINTS, scaleFactor=1.3, nlevels=5, edgeThreshold=15,
                                   patchSize=15, fastThreshold=10)
    return _DETECTOR


def grey_for_detection(image: np.ndarray) -> np.ndarray:
    """H,W uint8 grey of an HWC image at a longer side of at most LOCAL_SIDE (area-averaged)."""
    import cv2

    grey = image.astype(np.float32).mean(axis=-1) if image.ndim == 3 else image.astype(np.float32)
    if image.dtype != np.uint8:  # float or 16-bit arrays: their own range onto 0..255
        low, high = float(np.min(grey)), float(np.max(grey))
        grey = (grey - low) * (255.0 / max(high - low, 1e-12))
    grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    h, w = grey.shape
    scale = LOCAL_SIDE / max(h, w)
    if scale < 1:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return grey


def too_narrow(shape) -> bool:
    """Whether an image of this H, W, large enough for keypoints (LOCAL_MIN_SIDE on its longer side),
    is too thin for them once scaled for detection (the record's kp_skipped)."""
    h, w = shape[:2]
    scale = min(1.0, LOCAL_SIDE / max(h, w))
    return max(h, w) >= LOCAL_MIN_SIDE and min(h, w) * scale < LOCAL_MIN_SHORT_SIDE


def local_features(image: np.ndarray):
    """(counts[2], xy[2, P, 2] uint8, descriptors[2, P, 32] uint8) for the image and its mirror
    (view 1: coordinates in the mirrored frame; whole pixels of the <= 256 px detection image, which
    the 4 px tolerance of the geometric check does not miss). Zero counts for images too small or
    too thin (`too_narrow`)."""
    counts = np.zeros(2, np.int64)
    xy = np.zeros((2, LOCAL_POINTS, 2), np.uint8)
    desc = np.zeros((2, LOCAL_POINTS, DESCRIPTOR_BYTES), np.uint8)
    if max(image.shape[:2]) < LOCAL_MIN_SIDE or too_narrow(image.shape):
        return counts, xy, desc
    grey = grey_for_detection(image)
    for view, picture in enumerate((grey, np.ascontiguousarray(grey[:, ::-1]))):
        points, found = _detector().detectAndCompute(picture, None)
        if found is None or not len(points):
            continue
        order = np.argsort([-p.response for p in points], kind="stable")[:LOCAL_POINTS]
        counts[view] = len(order)
        xy[view, :len(order)] = np.clip(np.round([points[k].pt for k in order]), 0, 255)
        desc[view, :len(order)] = found[order]
    return counts, xy, desc
