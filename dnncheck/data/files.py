"""Image-file sources (class folders, manifest CSV) share this: decode each file once, skip and
count the unreadable ones, and group the rest into splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnncheck.data.dataset import Dataset, SplitData, stack_if_uniform
from dnncheck.data.images import DecodeError, decode_many, harmonise_channels
from dnncheck.errors import UserError


@dataclass(frozen=True)
class FileEntry:
    sample_id: str
    path: Path
    label: int
    split: str
    group: str | None = None


def build_image_dataset(source: str, entries: list[FileEntry], classes: list[str], max_side: int,
                        progress=None) -> Dataset:
    decoded = decode_many([e.path for e in entries], max_side, progress)
    unreadable = [(e.sample_id, str(out)) for e, out in zip(entries, decoded) if isinstance(out, DecodeError)]
    good = [(e, out) for e, out in zip(entries, decoded) if not isinstance(out, DecodeError)]
    if not good:
        raise UserError(f"{source}: none of the {len(entries)} image files could be decoded "
                        f"(first: {unreadable[0][0]}: {unreadable[0][1]}); check the files are images")
    images, channels = harmonise_channels([out[0] for _, out in good])
    by_split: dict[str, list[int]] = {}
    for i, (entry, _) in enumerate(good):
        by_split.setdefault(entry.split, []).append(i)
    has_groups = any(e.group is not None for e, _ in good)
    splits = {}
    for name, idx in by_split.items():
        splits[name] = SplitData(
            name=name,
            ids=[good[i][0].sample_id for i in idx],
            y=np.array([good[i][0].label for i in idx], dtype=np.int64),
            x=stack_if_uniform([images[i] for i in idx]),
            groups=np.array([str(good[i][0].group) for i in idx], dtype=object) if has_groups else None,
            native_sizes=np.array([good[i][1][1] for i in idx], dtype=np.int64).reshape(-1, 2),
            modes=[good[i][1][2] for i in idx],
        )
    return Dataset(source=source, modality="image", task="classification", classes=classes,
                   splits=splits, channels=channels, unreadable=unreadable, decode_max_side=max_side)
