"""From a data folder (or .zip) to batched, prefetched ``tf.data`` datasets over cached images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline import cache as image_cache
from data_pipeline.archive import extract_once
from data_pipeline.discover import (
    DEFAULT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLITS,
    Discovery,
    discover,
    take_subset,
)
from data_pipeline.errors import DataError


@dataclass(frozen=True)
class DataConfig:
    """Everything that decides which images a run sees, and how they are cached."""

    data_dir: Path
    image_size: int = 227
    seed: int = DEFAULT_SEED
    val_fraction: float = DEFAULT_VAL_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    subset: int | None = None
    cache_root: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with absolute paths: what a trial process or a later export rebuilds
        the very same splits from (``from_dict``)."""
        return {
            "data_dir": str(Path(self.data_dir).resolve()),
            "image_size": self.image_size,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "subset": self.subset,
            "cache_root": str(Path(self.cache_root).resolve()) if self.cache_root else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        return cls(
            data_dir=Path(d["data_dir"]),
            image_size=int(d["image_size"]),
            seed=int(d["seed"]),
            val_fraction=float(d["val_fraction"]),
            test_fraction=float(d["test_fraction"]),
            subset=d["subset"],
            cache_root=Path(d["cache_root"]) if d["cache_root"] else None,
        )

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise DataError(f"--image-size must be positive, but got {self.image_size}.")
        if self.subset is not None and self.subset < 1:
            raise DataError(f"--subset must be a positive number of images, but got {self.subset}.")


@dataclass(frozen=True)
class PreparedData:
    """A validated, cached data set: what the search trains on and the report describes."""

    config: DataConfig
    discovery: Discovery
    cached: image_cache.CachedImages

    @property
    def cache_dir(self) -> Path:
        return self.cached.path.parent

    @property
    def classes(self) -> tuple[str, ...]:
        return self.discovery.classes

    def counts(self) -> dict[str, dict[str, int]]:
        """Usable images per split and class (rejects excluded)."""
        out: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        for f in self.cached.files:
            out[f.split][f.label] = out[f.split].get(f.label, 0) + 1
        return out

    def split_size(self, split: str) -> int:
        """Usable images in ``split`` (``train``, ``validation`` or ``test``)."""
        return sum(self.counts()[split].values())

    def skipped_summary(self) -> str:
        total = len(self.discovery.files)
        rejects = self.cached.rejects
        if not rejects:
            return f"skipped 0 of {total:,} files"
        shown = ", ".join(f"{r.path} ({r.reason})" for r in rejects[:3])
        more = f", and {len(rejects) - 3} more" if len(rejects) > 3 else ""
        return f"skipped {len(rejects):,} of {total:,} files: {shown}{more}"

    def write_reject_manifest(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "skipped": [{"path": r.path, "reason": r.reason} for r in self.cached.rejects],
                    "unlabelled": list(self.discovery.unlabelled),
                },
                indent=2,
            )
        )

    def datasets(self, batch_size: int, *, augment: bool = False, seed: int | None = None):
        """``(train, validation)`` datasets of ``(uint8 RGB images, int32 labels)``.

        Images stay uint8 until the model's first layer scales them to [0, 1] (on the GPU when
        there is one): converting to float32 here would move 4x the bytes through the CPU,
        which on 2 cores costs more than everything else in the pipeline together.
        """
        return self.fold_datasets(
            0, batch_size, augment=augment, seed=self.config.seed if seed is None else seed
        )

    def fold_count(self) -> int:
        """How many selection folds the train images hold (``selection_folds``)."""
        return len(
            selection_folds(
                self.cached.split("train")[1],
                self.cached.split("validation")[1],
                seed=self.config.seed,
            )
        )

    def fold_datasets(
        self, fold: int, batch_size: int, *, augment: bool = False, seed: int
    ) -> tuple[Any, Any]:
        """``(train, validation)`` of selection fold ``fold`` (``selection_fold``): the fold's
        train images held out to validate on, the rest of train and the validation images to
        train on; fold 0 is the split as it is (``datasets``)."""
        (fit_rows, fit_labels), (held_rows, held_labels) = selection_fold(
            self.cached.split("train"),
            self.cached.split("validation"),
            fold,
            seed=self.config.seed,
        )
        images = _as_tensor(self.cached.images)
        return (
            make_dataset(
                images, fit_rows, fit_labels, batch_size, shuffle=True, augment=augment, seed=seed
            ),
            make_dataset(
                images, held_rows, held_labels, batch_size, shuffle=False, augment=False, seed=seed
            ),
        )

    def training_dataset(
        self, splits: tuple[str, ...], batch_size: int, *, augment: bool = False, seed: int
    ):
        """Shuffled batches of several splits together: the refit of the winner on train +
        validation, once every choice is made."""
        parts = [self.cached.split(s) for s in splits]
        rows = np.concatenate([r for r, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        images = _as_tensor(self.cached.images)
        return make_dataset(
            images, rows, labels, batch_size, shuffle=True, augment=augment, seed=seed
        )

    def evaluation_dataset(self, split: str, batch_size: int):
        """One split in file order, unshuffled and unaugmented: for scoring a trained model."""
        rows, labels = self.cached.split(split)
        images = _as_tensor(self.cached.images)
        return make_dataset(
            images, rows, labels, batch_size, shuffle=False, augment=False, seed=self.config.seed
        )

    def paths(self, split: str) -> list[Path]:
        """The original files of a split, in the order of ``arrays(split)``."""
        return [self.discovery.root / f.path for f in self.cached.files if f.split == split]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """A split as in-memory uint8 images and int labels (evaluation, exports)."""
        rows, labels = self.cached.split(split)
        return np.asarray(self.cached.images[rows]), labels


Rows = tuple[np.ndarray, np.ndarray]  # cache rows of some images, and their labels


def selection_folds(
    train_labels: np.ndarray, val_labels: np.ndarray, *, seed: int
) -> list[np.ndarray]:
    """Disjoint folds of the train images, each with as many images of every class as
    validation has: positions into the train split, sorted.

    The evidence phase's selection validates its seed ``k`` on fold ``k`` instead of on the
    validation images, which already chose the search's top configurations (a configuration
    those images happen to favour would stay favoured over every seed). A fold trains on the
    rest of train plus validation, so each of its runs trains on as many images as a search
    trial. Seeded by the data split's seed: every process finds the same folds. As many folds
    as every class can fill; none when validation is empty or train too small.
    """
    train_labels, val_labels = np.asarray(train_labels), np.asarray(val_labels)
    classes, wanted = np.unique(val_labels, return_counts=True)
    if classes.size == 0:
        return []
    rng = np.random.default_rng(seed)
    mixed = [rng.permutation(np.flatnonzero(train_labels == c)) for c in classes]
    n = min(len(m) // int(w) for m, w in zip(mixed, wanted, strict=True))
    return [
        np.sort(
            np.concatenate([m[k * w : (k + 1) * w] for m, w in zip(mixed, wanted, strict=True)])
        )
        for k in range(n)
    ]


def selection_fold(train: Rows, validation: Rows, fold: int, *, seed: int) -> tuple[Rows, Rows]:
    """``(fit, held_out)`` of selection fold ``fold`` (1-based, ``selection_folds``): the fold's
    train images are held out, the rest of train and all of validation fit. Fold 0 is the
    split as it is: ``(train, validation)``."""
    if fold == 0:
        return train, validation
    folds = selection_folds(train[1], validation[1], seed=seed)
    if not 1 <= fold <= len(folds):
        raise ValueError(f"selection fold {fold} does not exist: these images hold {len(folds)}")
    held = np.zeros(len(train[0]), bool)
    held[folds[fold - 1]] = True
    fit = (
        np.concatenate([train[0][~held], validation[0]]),
        np.concatenate([train[1][~held], validation[1]]),
    )
    return fit, (train[0][held], train[1][held])


def resolve_root(data_dir: Path, cache_root: Path) -> Path:
    """A folder as is; a .zip archive extracted once into the cache."""
    data_dir = Path(data_dir)
    if data_dir.is_file() and data_dir.suffix.lower() == ".zip":
        return extract_once(data_dir, cache_root)
    return data_dir


def find_images(config: DataConfig) -> Discovery:
    """The labelled, split (and subset) files a configuration selects, before any decoding."""
    root = resolve_root(config.data_dir, config.cache_root or image_cache.default_cache_root())
    found = discover(
        root,
        seed=config.seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
    )
    if config.subset is not None:
        found = take_subset(found, config.subset, seed=config.seed)
    return found


def prepare(config: DataConfig, *, progress=None) -> PreparedData:
    """Discover, subset, validate and cache: every image decoded at most once per size."""
    cache_root = config.cache_root or image_cache.default_cache_root()
    found = find_images(config)
    kwargs = {"progress": progress} if progress else {}
    cached = image_cache.build(found, config.image_size, cache_root, **kwargs)
    for split in SPLITS:
        if not any(f.split == split for f in cached.files):
            raise DataError(
                f"no decodable {split} images in {str(config.data_dir)!r} "
                f"({len(cached.rejects)} files rejected)."
            )
    return PreparedData(config=config, discovery=found, cached=cached)


def _as_tensor(images: np.ndarray) -> Any:
    """The cache as a tensor over the very same memory (DLPack, no copy).

    The cache is memory-mapped (``cache.build``): TensorFlow reads the page cache directly, so
    starting a trial copies nothing, processes on one host share one copy, and a cache larger
    than RAM is paged in as batches need it. Arrays TensorFlow cannot alias (not 64-byte
    aligned, not contiguous, read-only) are copied once.
    """
    import tensorflow as tf

    if images.flags.c_contiguous and images.flags.writeable and images.ctypes.data % 64 == 0:
        return tf.experimental.dlpack.from_dlpack(images.__dlpack__())
    return tf.constant(images)


def make_dataset(
    images: Any,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool,
    augment: bool,
    seed: int,
):
    """Shuffled, prefetched uint8 batches gathered from the cache tensor inside the graph: a
    memory copy per image, never a decode."""
    import tensorflow as tf

    size = int(images.shape[1])

    def load(batch_rows, batch_labels):
        x = tf.ensure_shape(tf.gather(images, batch_rows), [None, size, size, 3])
        if augment:
            x = _augment(x, batch_rows, seed)
        return x, batch_labels

    ds = tf.data.Dataset.from_tensor_slices((rows.astype(np.int64), labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    # A batch is one memory copy: one thread gathers it while the model trains on the previous
    # one. Augmentation (a resize per image) gets a second thread.
    parallel = 2 if augment else 1
    ds = ds.batch(batch_size).map(load, num_parallel_calls=parallel, deterministic=True)
    return ds.prefetch(PREFETCH_BATCHES).with_options(_options())


PREFETCH_BATCHES = 2


def _options():
    """No static graph rewrites and no runtime autotuning.

    A rewrite serialises the dataset graph, copying the captured image tensor (hundreds of MB)
    at every epoch. Autotuning (``AUTOTUNE`` parallelism and buffers) made every other epoch
    40% slower on 2 cores (1.8 s vs 2.5 s at 128px, its threads competing with training), and a
    search 5% slower than stock Keras Tuner's; the fixed sizes above are what it converges to
    for a pipeline whose only work is a memory copy (``bench/README.md``, issue 16).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_optimization.inject_prefetch = False
    options.autotune.enabled = False
    return options


def _augment(x, batch_rows, seed: int):
    """Random horizontal flip and random crop (87.5-100% of the side, resized back), seeded.

    Each batch's random stream is derived from the seed and the batch's (shuffled) rows, so it
    differs between epochs yet repeats exactly for the same seed.
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    size = x.shape[1]
    mix = tf.reduce_sum(batch_rows * tf.range(1, tf.cast(n, tf.int64) + 1, dtype=tf.int64))
    key = tf.stack([tf.constant(seed, tf.int64), mix])
    flip = tf.random.stateless_uniform([n], key) < 0.5
    x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    scale = tf.random.stateless_uniform([n], key + 1, 0.875, 1.0)
    y0 = tf.random.stateless_uniform([n], key + 2) * (1.0 - scale)
    x0 = tf.random.stateless_uniform([n], key + 3) * (1.0 - scale)
    boxes = tf.stack([y0, x0, y0 + scale, x0 + scale], axis=1)
    crops = tf.image.crop_and_resize(x, boxes, tf.range(n), [size, size])
    return tf.cast(tf.clip_by_value(tf.round(crops), 0.0, 255.0), tf.uint8)
