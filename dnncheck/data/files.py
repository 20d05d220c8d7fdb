"""Image-file sources (class folders, manifest CSV) share this: one streaming pass turns every file
into its compact record, the unreadable ones are counted and skipped, and the rest are grouped into
splits whose pixels stay on disk (`ImageFiles`) until a check loads the samples it uses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnncheck.data.dataset import Dataset, SplitData
from dnncheck.errors import UserError


@dataclass(frozen=True, slots=True)
class FileEntry:
    sample_id: str
    path: str  # the file's path as text (a Path object per file was ~0.4 KB: 0.4 GB for a million files)
    label: int
    split: str
    group: str | None = None


class ImageFiles:
    """A split's images as files: decoded on access, never all at once.

    Indexing with an integer decodes one image (HWC uint8, the dataset's channel count); `take`
    selects a subset without decoding; `resized(size)` loads a whole subset at the model's input
    size in the data pass's worker processes.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, paths: list[str], max_side: int, channels: int, workers: int = 1, root: str = ""):
        """paths: the files' paths, relative to `root` when one is given (a folder's files are named by
        their sample ids: the ids' own strings serve, not a second, absolute copy of each: 0.1 KB a
        file)."""
        self.paths, self.root = list(paths), root
        self.max_side, self.channels, self.workers = max_side, channels, workers

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> str:
        return self.root + self.paths[i]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(np.arange(len(self))[i])
        from dnncheck.data.scan import decode_for_model

        return decode_for_model(self.path(int(i)), self.max_side, self.channels)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self.paths)

    def take(self, index) -> "ImageFiles":
        return ImageFiles([self.paths[int(i)] for i in index], self.max_side, self.channels, self.workers, self.root)

    def with_channels(self, channels: int) -> "ImageFiles":
        return ImageFiles(self.paths, self.max_side, channels, self.workers, self.root)

    @staticmethod
    def concat(parts: list["ImageFiles"], channels: int) -> "ImageFiles":
        first = parts[0]
        if all(part.root == first.root for part in parts):
            return ImageFiles([p for part in parts for p in part.paths], first.max_side, channels, first.workers,
                              first.root)
        return ImageFiles([part.path(i) for part in parts for i in range(len(part))], first.max_side, channels,
                          first.workers)

    def resized(self, size: tuple[int, int], progress=None):
        import torch

        return torch.from_numpy(self.resized_array(size, progress))

    def resized_array(self, size: tuple[int, int], progress=None) -> np.ndarray:
        """N,C,H,W float32 numpy array of the files resized to `size` (no torch import)."""
        from dnncheck.data.scan import load_resized

        return load_resized([self.path(i) for i in range(len(self))], self.max_side, self.channels, size,
                            self.workers, progress)


def _image_files(entries: list[FileEntry], max_side: int, channels: int, workers: int) -> ImageFiles:
    """The entries' files, named by their sample ids under one root where every path is root + id
    (a class folder's files), else by their own paths (a manifest's)."""
    if entries:
        first = entries[0]
        root = first.path[:len(first.path) - len(first.sample_id)]
        if all(e.path.startswith(root) and e.path.endswith(e.sample_id) and len(e.path) == len(root) + len(e.sample_id)
               for e in entries):
            return ImageFiles([e.sample_id for e in entries], max_side, channels, workers, root)
    return ImageFiles([e.path for e in entries], max_side, channels, workers)


def _mode_names(modes: np.ndarray) -> list[str]:
    """Each record's PIL mode as text, one shared string per distinct mode (not one per image)."""
    names = {m: m.decode("ascii", "replace") for m in set(modes.tolist())}
    return [names[m] for m in modes.tolist()]


def build_image_dataset(source: str, entries: list[FileEntry], classes: list[str], settings,
                        progress=None) -> Dataset:
    from dnncheck.data.scan import scan_files

    started = time.perf_counter()
    scan = scan_files([e.path for e in entries], settings, progress)
    seconds = time.perf_counter() - started  # reported only (JSON environment), never judged
    ok = scan.records["ok"]
    unreadable = [(e.sample_id, reason) for e, reason, good in zip(entries, scan.reasons, ok) if not good]
    if not ok.any():
        raise UserError(f"{source}: none of the {len(entries)} image files could be decoded "
                        f"(first: {unreadable[0][0]}: {unreadable[0][1]}); check the files are images")
    good = np.flatnonzero(ok)
    channels = 3 if np.any(scan.records["channels"][good] == 3) else 1
    by_split: dict[str, list[int]] = {}
    for i in good:
        by_split.setdefault(entries[i].split, []).append(int(i))
    has_groups = any(entries[i].group is not None for i in good)
    splits = {}
    for name, idx in by_split.items():
        records = scan.records[idx]
        splits[name] = SplitData(
            name=name,
            ids=[entries[i].sample_id for i in idx],
            y=np.array([entries[i].label for i in idx], dtype=np.int64),
            x=_image_files([entries[i] for i in idx], settings.max_side, channels, settings.worker_count),
            groups=np.array([str(entries[i].group) for i in idx], dtype=object) if has_groups else None,
            native_sizes=records["native"].astype(np.int64),
            modes=_mode_names(records["mode"]),
            records=records,
        )
    dataset = Dataset(source=source, modality="image", task="classification", classes=classes, splits=splits,
                      channels=channels, unreadable=unreadable, decode_max_side=settings.max_side)
    dataset.notes += scan.notes
    thin = int(np.count_nonzero(scan.records["kp_skipped"][good]))
    if thin:
        dataset.notes.append(f"{thin} image(s) are too thin for keypoints (shorter side under 16 px at the 256 px "
                             "detection size): crops and mirror images of them are not searched")
    dataset.scan = {"files": len(entries), "decoded": scan.decoded, "from_cache": len(entries) - scan.decoded,
                    "engine": settings.engine, "workers": settings.worker_count if settings.engine == "local" else None,
                    **({"ray_nodes": scan.ray_nodes} if scan.ray_nodes is not None else {}),
                    "seconds": round(seconds, 2), "images_per_second": round(len(entries) / max(seconds, 1e-9), 1)}
    return dataset
