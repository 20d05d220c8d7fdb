"""Image folders: root/<split>/<class>/<file> or root/<class>/<file> (DESIGN section 2).

Files are listed in the order torchvision's `make_dataset` (ImageFolder's walk) lists them, with its
image extensions; files with other extensions are skipped and counted, hidden files and folders
ignored. Unlike that walk, a symbolic link is never followed back into the dataset's own tree (a
`loop -> ..` link would otherwise relabel every image of the other classes, forty levels deep), nor
into a folder already listed; links to folders elsewhere are followed once, except into a system
folder (/proc, /etc, ...: errors.SYSTEM_FOLDERS), which is refused with the link's path.
Sample id: the file's path relative to root, with "/".
"""

from __future__ import annotations

import os

from pathlib import Path

from dnncheck.data.cache import cache_dir
from dnncheck.data.dataset import SPLITS, Dataset
from dnncheck.data.files import FileEntry, build_image_dataset
from dnncheck.errors import UserError, refuse_system_path

# torchvision.datasets.folder.IMG_EXTENSIONS (0.29), written out: importing torchvision for it
# imported torch, 480 MB resident, in audits that never touch a model (tests assert they agree)
TORCHVISION_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
EXTRA_EXTENSIONS = (".gif",)
IMAGE_EXTENSIONS = TORCHVISION_EXTENSIONS + EXTRA_EXTENSIONS


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


MAX_FOLDER_DEPTH = 64  # levels below a class folder; deeper is a generated loop or an attack, not a dataset


def _walk_files(top: Path, root: Path) -> list[str]:
    """Files under `top`, sorted as torchvision's make_dataset sorts them (by folder, then name).

    Symbolic links to folders are followed only when they lead outside `root`'s real tree and to a
    folder not seen yet: no loops, no file listed twice, no image picked up under a second class.
    The walk keeps its own stack (os.walk recurses: 1,200 nested folders raised RecursionError) and
    refuses a folder more than MAX_FOLDER_DEPTH levels down. dnncheck's own cache folder is never listed.
    """
    refuse_system_path(top, "class folder")  # the class or split folder itself may be a link
    real_root = Path(os.path.realpath(root))
    own_cache = os.path.realpath(cache_dir())
    seen = {os.path.realpath(top)}
    found: list[tuple[str, list[str]]] = []
    stack = [(str(top), 0)]
    while stack:
        current, depth = stack.pop()
        subdirs, files = _entries(current)
        found.append((current, files))
        for name in subdirs:
            path = os.path.join(current, name)
            real = os.path.realpath(path)
            inside = Path(real) == real_root or real_root in Path(real).parents
            if real in seen or real == own_cache or (os.path.islink(path) and inside):
                continue
            if os.path.islink(path):
                refuse_system_path(path, "folder link in the data")
            if depth + 1 > MAX_FOLDER_DEPTH:
                raise UserError(f"{current[:200]}{'...' if len(current) > 200 else ''}: folders nest more than "
                                f"{MAX_FOLDER_DEPTH} levels below {top}; a dataset's files sit a few levels down: "
                                "point dnncheck at the dataset's root or remove the nesting")
            seen.add(real)
            stack.append((path, depth + 1))
    # paths as text: a Path per file (and pathlib's interning of every name) was 0.16 KB a file
    return [os.path.join(current, name) for current, files in sorted(found) for name in sorted(files)]


def _entries(folder: str) -> tuple[list[str], list[str]]:
    """(sub-folder names, other names) of one folder, as os.walk splits them (a link to a folder is a
    folder); a folder that cannot be read holds nothing, as for os.walk."""
    subdirs, files = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (subdirs if is_dir else files).append(entry.name)
    except OSError:
        pass
    return subdirs, files


def load_folder(root: Path, settings, progress=None) -> Dataset:
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
    from dnncheck.data.maskfiles import is_mask_layout

    if is_mask_layout(layout):
        return _load_mask_folder(root, layout, settings, progress)
    class_names = sorted({c.name for d in layout.values() for c in _subdirs(d)})
    if not class_names:
        raise UserError(f"{root}: no class subfolders inside {', '.join(str(d) for d in layout.values())}; "
                        "expected <split>/<class>/<file>")
    class_to_idx = {name: i for i, name in enumerate(class_names)}
    ignored: list[str] = []
    entries = [FileEntry(sample_id, path, class_to_idx[class_dir.name], split)
               for split, directory in layout.items() for class_dir in _subdirs(directory)
               for sample_id, path in _image_files(class_dir, root, ignored)]
    if not entries:
        raise UserError(f"{root}: the class folders hold no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                        "check the folder is the dataset's root")
    dataset = build_image_dataset(str(root), entries, class_names, settings, progress)
    dataset.ignored_files = ignored
    return dataset


def _image_files(top: Path, root: Path, ignored: list[str]) -> list[tuple[str, str]]:
    """(sample id, path) of the image files under `top` (by torchvision's extensions, as its
    has_file_allowed_extension; hidden files skipped); other files' ids are added to `ignored`."""
    prefix = os.path.join(str(root), "")
    found = []
    for path in _walk_files(top, root):
        if os.path.basename(path).startswith("."):
            continue
        sample_id = (path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)).replace(os.sep, "/")
        if path.lower().endswith(IMAGE_EXTENSIONS):
            found.append((sample_id, path))
        else:
            ignored.append(sample_id)
    return found


def _load_mask_folder(root: Path, layout: dict[str, Path], settings, progress=None) -> Dataset:
    """root/<split>/images + root/<split>/masks: the images as files (one placeholder class), their
    masks paired by name and kept as paths until the model's input size is known (load_dataset)."""
    from dnncheck.data.maskfiles import pair_masks

    ignored: list[str] = []
    triples = [(sample_id, path, split) for split, directory in layout.items()
               for sample_id, path in _image_files(directory / "images", root, ignored)]
    if not triples:
        raise UserError(f"{root}: the images/ folders hold no image files ({', '.join(IMAGE_EXTENSIONS)})")
    paired, spare = pair_masks(root, layout, triples, _walk_files)
    entries = [FileEntry(sample_id, path, 0, split) for sample_id, path, split in triples]
    dataset = build_image_dataset(str(root), entries, ["image"], settings, progress)
    dataset.ignored_files = ignored
    dataset.task = "segmentation"
    dataset.pending_masks = {sample_id: paired[sample_id] for part in dataset.splits.values() for sample_id in part.ids}
    if spare:
        dataset.notes.append(f"{len(spare)} mask file(s) have no image of the same name and were not read "
                             f"(first: {spare[0]})")
    return dataset
