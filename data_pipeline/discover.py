"""Find the images of a data set, label them and split them into train, validation and test.

Three splits, three jobs: ``train`` fits, ``validation`` makes every decision of a search (which
trial, which epoch, which promotion), ``test`` is read only by the runs that judge. A score
on the images that chose a model is optimistic (the winner's curse), so the two never mix.
(The evidence phase chooses among the search's best on folds of ``train`` held out in turn,
``data_pipeline.pipeline.selection_folds``: images that did not rank the search's trials.)

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
from typing import Any

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
    "test1": "test",  # Kaggle's competition archive: train/ and an unlabelled test1/
    "train": "train",
    "test": "test",
    "validation": "validation",
    "val": "validation",
}
SPLITS = ("train", "validation", "test")
DEFAULT_SEED = 1337
# 15% for validation: it chooses among 30 trials, so it needs resolution (on 1,600 train
# images: 240 to select with, a 95% interval of about +-6 points; 10% would be +-7), and 15% for
# test where the data has no test/ folder: the verdict's interval narrows with its size. Every
# image kept to choose or to judge is one the search does not train on, and stock Keras Tuner's
# users train on 90%: at 20% + 20% our shipped model was 2.2 points behind stock's on average
# over three seeds, at 15% + 15% -0.8 over ten independent searches, within the noise
# (bench/README.md, "At the check's proportions" and after).
DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15


@dataclass(frozen=True)
class ImageFile:
    """One labelled image: ``path`` is relative to the data root, POSIX-style."""

    path: str
    split: str  # "train", "validation" or "test"
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


# How each layout is named to a user: the README calls train/ + test/ the blog's layout.
LAYOUT_NAMES = {"train-test": "blog (train/ + test/)"}


def layout_name(layout: str) -> str:
    return LAYOUT_NAMES.get(layout, layout)


def is_image_candidate(path: Path | os.DirEntry) -> bool:
    """True for files that claim to be an image by extension, or are one by content."""
    image_name = os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS
    try:
        if path.name.startswith(".") or not path.is_file():
            return False
    except OSError:  # a symbolic-link loop: listed by its name, rejected when it cannot be read
        return image_name and not path.name.startswith(".")
    if image_name:
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
        try:
            is_dir = child.is_dir()
        except OSError:  # a symbolic-link loop
            is_dir = False
        if is_dir:
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


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DataError(
            f"--val-fraction must be in (0, 1), but got {val_fraction}; e.g. 0.15 keeps "
            "15% of the training images to choose trials with."
        )
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in [0, 1), but got {test_fraction}.")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"--val-fraction + --test-fraction must leave images to train on, but got "
            f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction:g}."
        )


def stratified_split(
    labels: dict[str, str], *, seed: int, val_fraction: float, test_fraction: float = 0.0
) -> dict[str, str]:
    """Assign each path to train, validation or test, per class, reproducibly for a seed."""
    check_fractions(val_fraction, test_fraction)
    shares = {"test": test_fraction, "validation": val_fraction}
    return _stratify(labels, seed=seed, shares={k: v for k, v in shares.items() if v > 0})


def _stratify(labels: dict[str, str], *, seed: int, shares: dict[str, float]) -> dict[str, str]:
    """Cut each class, permuted by one seeded stream, into ``shares`` and train (the rest).

    Every split gets the class proportions of the whole, and at least one image of each class
    where the class has an image for every split and one more to train on.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for path, label in labels.items():
        by_class[label].append(path)
    split: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for label in sorted(by_class):
        paths = sorted(by_class[label])
        n = len(paths)
        counts = {s: round(n * f) for s, f in shares.items()}
        if n > len(shares):
            counts = {s: max(c, 1) for s, c in counts.items()}
            while sum(counts.values()) > n - 1:  # train keeps at least one image
                counts[max(counts, key=lambda s: (counts[s], s))] -= 1
        cut = [s for s in shares for _ in range(counts[s])]
        order = rng.permutation(n)
        for rank, i in enumerate(order):
            split[paths[i]] = cut[rank] if rank < len(cut) else "train"
    return split


def _carve(
    labels: dict[str, str],
    split: dict[str, str],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> tuple[dict[str, str], list[str]]:
    """Give the splits a folder layout lacks a seeded, stratified share of its train images."""
    wanted = {"test": test_fraction, "validation": val_fraction}
    missing = {s: f for s, f in wanted.items() if s not in split.values() and f > 0}
    if not missing:
        return split, []
    train = {p: lab for p, lab in labels.items() if split[p] == "train"}
    out = {**split, **_stratify(train, seed=seed, shares=missing)}
    note = " and ".join(f"{s} is a seeded, stratified {f:.0%}" for s, f in missing.items())
    return out, [f"{note} of train/"]


def _descend(root: Path) -> Path:
    """Skip wrapper folders (``PetImages/`` in Microsoft's zip) that hold nothing but one folder."""
    current = root
    while True:
        files, dirs = _visible_children(current)
        if files or len(dirs) != 1 or dirs[0].name.lower() in SPLIT_DIRS:
            return current
        current = dirs[0]


def discover(
    root: Path,
    *,
    seed: int = DEFAULT_SEED,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> Discovery:
    """Detect the layout under ``root`` and return its labelled files in three splits.

    Layouts: ``train/`` + ``test/`` (the blog's: ``test/`` is the test set, so a score on it
    compares with the blog's 87.05%; validation is ``val/`` or ``--val-fraction`` of
    ``train/``), one flat folder of ``label.id.ext`` names, or one subfolder per class (images
    at any depth below it); the last two are cut into train, validation (``val_fraction``) and
    test (``test_fraction``).
    """
    check_fractions(val_fraction, test_fraction)
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
    split_dirs: dict[str, Path] = {}
    for d in dirs:  # sorted: test/ is preferred to test1/, as val/ to validation/
        if d.name.lower() in SPLIT_DIRS:
            split_dirs.setdefault(SPLIT_DIRS[d.name.lower()], d)
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
        if "test" not in split.values():
            # No labelled test folder (none at all, or Kaggle's unlabelled test1/): cut the
            # test set from train/, as for a flat folder.
            layout = "train-split"
        split, carved = _carve(
            labels, split, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )
        notes += carved
    elif files:
        layout = "flat"
        labels, unlabelled = _named_files(files, root)
        if dirs:
            notes.append(
                f"ignored {len(dirs)} subfolder(s) of {_rel(base, root) or '.'}: "
                "a flat folder of named files was found"
            )
        split = stratified_split(
            labels, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )
    elif dirs:
        layout = "class-folders"
        labels = {}
        for d in dirs:
            images = _walk_images(d)
            if not images:
                notes.append(f"ignored empty class folder {_rel(d, root)!r}")
            for f in images:
                labels[_rel(f, root)] = d.name
        split = stratified_split(
            labels, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
        )
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
    for split_name in SPLITS:
        if split_name not in split.values():
            raise DataError(
                f"data folder {str(root)!r} ({layout} layout, {len(labels)} labelled images) "
                f"has no {split_name} images; it needs at least one image per class for each "
                "of train, validation and test."
            )
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
    minimum = len(SPLITS) * len(discovery.classes)
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


def manifest(discovery: Discovery) -> dict[str, list[Any]]:
    """Each file a run uses: ``{path: [split, size, mtime_ns]}``. What a run remembers of its
    data, so that a resume on a folder whose content changed is refused, not re-split."""
    out: dict[str, list[Any]] = {}
    for f in discovery.files:
        try:
            st = (discovery.root / f.path).stat()
            out[f.path] = [f.split, st.st_size, st.st_mtime_ns]
        except OSError:
            out[f.path] = [f.split, None, None]
    return out


def only_times_changed(before: dict[str, list[Any]], now: dict[str, list[Any]]) -> bool:
    """Whether two manifests list the same files in the same splits with the same sizes: at
    most their modification times differ (a copy, a restore, an archive extracted again)."""
    return before.keys() == now.keys() and all(now[k][:2] == before[k][:2] for k in now)


def manifest_changes(before: dict[str, list[Any]], now: dict[str, list[Any]]) -> str | None:
    """How the files changed between two manifests, in words; None if they did not."""
    added = len(now.keys() - before.keys())
    removed = len(before.keys() - now.keys())
    same = now.keys() & before.keys()
    moved = sum(1 for k in same if now[k][0] != before[k][0])
    changed = sum(1 for k in same if now[k][0] == before[k][0] and now[k][1:] != before[k][1:])
    parts = [
        f"{n} {what}"
        for n, what in (
            (added, "added"),
            (removed, "removed"),
            (changed, "changed"),
            (moved, "moved to another split"),
        )
        if n
    ]
    return ", ".join(parts) if parts else None
