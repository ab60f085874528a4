"""Find the images of a data set, label them and split them into train and validation.

Labels come only from a file name's prefix before its first dot (``cat.123.jpg``) or from the
class folder directly below the data root (``PetImages/Cat/...``), never from a pattern over the
whole path: a data set stored under ``/data/concatenated/`` must not become all cats.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)
# Magic numbers of the formats we decode; a file is an image candidate by extension or by content.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
_CLUTTER_DIRS = frozenset({"__MACOSX"})
_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
SPLIT_DIRS = {
    "test1": "validation",  # Kaggle's competition archive: train/ and an unlabelled test1/
    "train": "train",
    "test": "validation",
    "validation": "validation",
    "val": "validation",
}
DEFAULT_SEED = 1337
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class ImageFile:
    """One labelled image: ``path`` is relative to the data root, POSIX-style."""

    path: str
    split: str  # "train" or "validation"
    label: str


@dataclass(frozen=True)
class Discovery:
    """What was found under a data root, before any image is decoded."""

    root: Path
    layout: str  # "train-test", "flat", "class-folders"
    classes: tuple[str, ...]
    files: tuple[ImageFile, ...]
    unlabelled: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def label_index(self, label: str) -> int:
        return self.classes.index(label)


def is_image_candidate(path: Path | os.DirEntry) -> bool:
    """True for files that claim to be an image by extension, or are one by content."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return head.startswith(_MAGIC)


def label_from_name(name: str) -> str | None:
    """``cat.123.jpg`` -> ``cat``; ``dog.concatenate.jpg`` -> ``dog``; ``123.jpg`` -> None.

    The prefix before the first dot is the label, provided the name has a further part
    (an id) besides an image extension and the prefix looks like a word.
    """
    parts = name.split(".")
    if len(parts) > 1 and "." + parts[-1].lower() in IMAGE_EXTENSIONS:
        parts = parts[:-1]
    if len(parts) < 2 or not _LABEL.fullmatch(parts[0]):
        return None
    return parts[0].lower()


def _visible_children(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files and subfolders of ``folder``, sorted by name (``scandir``: thousands of
    files cost one directory read, not a stat each)."""
    files, dirs = [], []
    with os.scandir(folder) as entries:
        children = sorted(entries, key=lambda e: e.name)
    for child in children:
        if child.name.startswith(".") or child.name in _CLUTTER_DIRS:
            continue
        if child.is_dir():
            dirs.append(Path(child.path))
        elif is_image_candidate(child):
            files.append(Path(child.path))
    return files, dirs


def _walk_images(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if any(p.startswith(".") or p in _CLUTTER_DIRS for p in rel):
            continue
        if is_image_candidate(path):
            found.append(path)
    return found


def _rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root``, POSIX-style (string slicing: pathlib's is slow)."""
    text, prefix = str(path), str(root)
    if text == prefix:
        return "."
    if text.startswith(prefix + os.sep):
        return text[len(prefix) + 1 :].replace(os.sep, "/")
    return path.relative_to(root).as_posix()


def _named_files(files: list[Path], root: Path) -> tuple[dict[str, str], list[str]]:
    labelled, unlabelled = {}, []
    for f in files:
        label = label_from_name(f.name)
        if label is None:
            unlabelled.append(_rel(f, root))
        else:
            labelled[_rel(f, root)] = label
    return labelled, unlabelled


def _split_folder_labels(folder: Path, root: Path) -> tuple[dict[str, str], list[str]]:
    """Labels of a train/ or test/ folder: named files, or class subfolders."""
    files, dirs = _visible_children(folder)
    if files or not dirs:
        return _named_files(files, root)
    labelled: dict[str, str] = {}
    for d in dirs:
        for f in _walk_images(d):
            labelled[_rel(f, root)] = d.name
    return labelled, []


def stratified_split(labels: dict[str, str], *, seed: int, val_fraction: float) -> dict[str, str]:
    """Assign each path to train or validation, per class, reproducibly for a given seed."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be in (0, 1), but got {val_fraction=}.")
    by_class: dict[str, list[str]] = defaultdict(list)
    for path, label in labels.items():
        by_class[label].append(path)
    split: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        n_val = round(len(paths) * val_fraction)
        if len(paths) >= 2:
            n_val = min(max(n_val, 1), len(paths) - 1)
        order = rng.permutation(len(paths))
        for rank, i in enumerate(order):
            split[paths[i]] = "validation" if rank < n_val else "train"
    return split


def _descend(root: Path) -> Path:
    """Skip wrapper folders (``PetImages/`` in Microsoft's zip) that hold nothing but one folder."""
    current = root
    while True:
        files, dirs = _visible_children(current)
        if files or len(dirs) != 1 or dirs[0].name.lower() in SPLIT_DIRS:
            return current
        current = dirs[0]


def discover(
    root: Path, *, seed: int = DEFAULT_SEED, val_fraction: float = DEFAULT_VAL_FRACTION
) -> Discovery:
    """Detect the layout under ``root`` and return its labelled, split files.

    Layouts: ``train/`` + ``test/`` (the test folder is validation), one flat folder of
    ``label.id.ext`` names, or one subfolder per class (images at any depth below it).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(
            f"data folder {str(root)!r} does not exist; pass --data-dir or run "
            "`python -m data_pipeline.download --dest DIR` to fetch Dogs vs Cats."
        )
    if not root.is_dir():
        raise DataError(f"data folder {str(root)!r} is not a folder (or a .zip archive).")
    base = _descend(root)
    files, dirs = _visible_children(base)
    split_dirs = {SPLIT_DIRS[d.name.lower()]: d for d in dirs if d.name.lower() in SPLIT_DIRS}
    notes: list[str] = []
    unlabelled: list[str] = []
    if not files and "train" in split_dirs:
        layout = "train-test"
        labels: dict[str, str] = {}
        split: dict[str, str] = {}
        for split_name, folder in sorted(split_dirs.items()):
            found, unl = _split_folder_labels(folder, root)
            labels.update(found)
            split.update(dict.fromkeys(found, split_name))
            unlabelled += unl
        if "validation" not in split.values():
            # No labelled test folder (none at all, or Kaggle's unlabelled test1/): validate
            # on a seeded stratified split of train/, as for a flat folder.
            layout = "train-split"
            split = stratified_split(labels, seed=seed, val_fraction=val_fraction)
            notes.append(
                "no labelled test/ folder: the validation set is a seeded, stratified "
                f"{val_fraction:.0%} of train/"
            )
    elif files:
        layout = "flat"
        labels, unlabelled = _named_files(files, root)
        if dirs:
            notes.append(
                f"ignored {len(dirs)} subfolder(s) of {_rel(base, root) or '.'}: "
                "a flat folder of named files was found"
            )
        split = stratified_split(labels, seed=seed, val_fraction=val_fraction)
    elif dirs:
        layout = "class-folders"
        labels = {}
        for d in dirs:
            images = _walk_images(d)
            if not images:
                notes.append(f"ignored empty class folder {_rel(d, root)!r}")
            for f in images:
                labels[_rel(f, root)] = d.name
        split = stratified_split(labels, seed=seed, val_fraction=val_fraction)
    else:
        raise DataError(
            f"no images found in {str(root)!r}: expected train/ and test/ folders, "
            "files named like cat.1.jpg, or one subfolder per class."
        )

    classes = tuple(sorted(set(labels.values())))
    if len(classes) < 2:
        what = f"only class {classes[0]!r}" if classes else "no labelled images"
        raise DataError(
            f"data folder {str(root)!r} ({layout} layout) has {what} "
            f"({len(labels)} labelled, {len(unlabelled)} unlabelled files); "
            "a classifier needs at least two classes."
        )
    for split_name in ("train", "validation"):
        if split_name not in split.values():
            raise DataError(f"data folder {str(root)!r} has no {split_name} images.")
    image_files = tuple(ImageFile(path=p, split=split[p], label=labels[p]) for p in sorted(labels))
    return Discovery(
        root=root,
        layout=layout,
        classes=classes,
        files=image_files,
        unlabelled=tuple(sorted(unlabelled)),
        notes=tuple(notes),
    )


def take_subset(discovery: Discovery, n: int, *, seed: int = DEFAULT_SEED) -> Discovery:
    """A stratified, seeded sample of ``n`` files, in proportion to each (split, class) group."""
    total = len(discovery.files)
    minimum = 2 * len(discovery.classes)
    if n < minimum:
        raise DataError(
            f"--subset must leave at least one image per class in each split "
            f"({minimum} or more), but got {n}."
        )
    if n >= total:
        return discovery
    groups: dict[tuple[str, str], list[ImageFile]] = defaultdict(list)
    for f in discovery.files:
        groups[(f.split, f.label)].append(f)
    keys = sorted(groups)
    quotas = {k: len(groups[k]) * n / total for k in keys}
    counts = {k: max(1, int(quotas[k])) for k in keys}
    # Largest remainder: hand out what rounding down left, biggest fractions first.
    for k in sorted(keys, key=lambda k: quotas[k] - int(quotas[k]), reverse=True):
        if sum(counts.values()) >= n:
            break
        if counts[k] < len(groups[k]):
            counts[k] += 1
    rng = np.random.default_rng(seed)
    chosen: list[ImageFile] = []
    for k in keys:
        members = groups[k]
        picks = rng.choice(len(members), size=min(counts[k], len(members)), replace=False)
        chosen += [members[i] for i in sorted(picks)]
    return Discovery(
        root=discovery.root,
        layout=discovery.layout,
        classes=discovery.classes,
        files=tuple(sorted(chosen, key=lambda f: f.path)),
        unlabelled=discovery.unlabelled,
        notes=(*discovery.notes, f"subset of {len(chosen)} of {total} files (seed {seed})"),
    )
