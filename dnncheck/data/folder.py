"""Image folders: root/<split>/<class>/<file> or root/<class>/<file> (DESIGN section 2).

File listing uses torchvision's `make_dataset` (the same walk ImageFolder does) with its image
extensions; files with other extensions are skipped and counted, hidden files and folders ignored.
Sample id: the file's path relative to root, with "/".
"""

from __future__ import annotations

from pathlib import Path

from dnncheck.data.dataset import SPLITS, Dataset
from dnncheck.data.files import FileEntry, build_image_dataset
from dnncheck.errors import UserError

EXTRA_EXTENSIONS = (".gif",)


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_folder(root: Path, max_side: int, progress=None) -> Dataset:
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension, make_dataset

    children = _subdirs(root)
    split_dirs = [p for p in children if p.name in SPLITS]
    if not children:
        files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        if files:
            raise UserError(f"{root}: has files but no class subfolders; arrange it as "
                            f"{root}/<class>/<file> (or {root}/<split>/<class>/<file>)")
        raise UserError(f"{root}: the folder is empty; point dnncheck at a folder of class subfolders")
    layout = {p.name: p for p in split_dirs} if split_dirs else {"train": root}
    if split_dirs and "train" not in layout:
        raise UserError(f"{root}: has {', '.join(layout)} split folders but no train/; add {root}/train/<class>/")
    class_names = sorted({c.name for d in layout.values() for c in _subdirs(d)})
    if not class_names:
        raise UserError(f"{root}: no class subfolders inside {', '.join(str(d) for d in layout.values())}; "
                        "expected <split>/<class>/<file>")
    class_to_idx = {name: i for i, name in enumerate(class_names)}
    extensions = tuple(IMG_EXTENSIONS) + EXTRA_EXTENSIONS
    ignored: list[str] = []

    def is_image_file(path: str) -> bool:
        name = Path(path).name
        if name.startswith("."):
            return False
        if has_file_allowed_extension(path, extensions):
            return True
        ignored.append(Path(path).relative_to(root).as_posix())
        return False

    entries = []
    for split, directory in layout.items():
        present = {c.name: class_to_idx[c.name] for c in _subdirs(directory)}
        for path, label in make_dataset(str(directory), present, is_valid_file=is_image_file, allow_empty=True):
            path = Path(path)
            entries.append(FileEntry(path.relative_to(root).as_posix(), path, label, split))
    if not entries:
        raise UserError(f"{root}: the class folders hold no image files ({', '.join(extensions)}); "
                        "check the folder is the dataset's root")
    dataset = build_image_dataset(str(root), entries, class_names, max_side, progress)
    dataset.ignored_files = ignored
    return dataset
