"""Validation, caching and the tf.data pipeline, on a deliberately messy folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_pipeline import cache as image_cache
from data_pipeline import images as image_decoding
from data_pipeline.pipeline import DataConfig, prepare, selection_fold, selection_folds
from tests.conftest import jpeg_bytes, make_blog_layout, write_image

GOOD = {
    "train/cat.0.jpg",
    "train/cat.1.jpg",
    "train/dog.0.jpg",
    "train/dog.1.jpg",
    "train/cat.gray.jpg",
    "train/cat.cmyk.jpg",
    "train/dog.rgba.png",
    "train/dog.anim.gif",
    "train/cat.bitmap.bmp",
    "train/dog.UPPER.JPG",
    "train/cat.long.jpeg",
    "train/dog.png-named.jpg",
    "train/dog.noext",
    "test/cat.0.jpg",
    "test/dog.0.jpg",
}
BAD = {
    "train/cat.empty.jpg": "empty file",
    "train/dog.truncated.jpg": "corrupt or truncated",
    "train/cat.text.jpg": "not an image",
}


def make_messy(root: Path) -> Path:
    make_blog_layout(root, train=2, test=1)
    t = root / "train"
    write_image(t / "cat.gray.jpg", mode="L", seed=1)
    write_image(t / "cat.cmyk.jpg", mode="CMYK", seed=2)
    write_image(t / "dog.rgba.png", fmt="PNG", mode="RGBA", seed=3)
    write_image(t / "dog.anim.gif", fmt="GIF", seed=4)
    write_image(t / "cat.bitmap.bmp", fmt="BMP", seed=5)
    write_image(t / "dog.UPPER.JPG", seed=6)
    write_image(t / "cat.long.jpeg", seed=7)
    write_image(t / "dog.png-named.jpg", fmt="PNG", seed=8)  # content wins over extension
    (t / "dog.noext").write_bytes(jpeg_bytes(9))
    (t / "cat.empty.jpg").write_bytes(b"")
    (t / "dog.truncated.jpg").write_bytes(jpeg_bytes(10, size=64)[:300])
    (t / "cat.text.jpg").write_text("this is not a picture")
    (t / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 60)
    (t / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (t / "readme.txt").write_text("clutter")
    return root


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return make_messy(tmp_path / "messy")


def test_messy_folder_keeps_every_valid_file_and_names_each_reject(
    messy: Path, cache_root: Path
) -> None:
    data = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    assert {f.path for f in data.cached.files} == GOOD
    assert {r.path: r.reason.split(":")[0] for r in data.cached.rejects}.keys() == BAD.keys()
    for r in data.cached.rejects:
        assert BAD[r.path] in r.reason
    assert data.skipped_summary().startswith("skipped 3 of 18 files: ")
    counts = data.counts()
    assert counts["test"] == {"cat": 1, "dog": 1}  # the blog's test/ folder
    fit_or_choose = Counter(counts["train"]) + Counter(counts["validation"])
    assert fit_or_choose == {"cat": 6, "dog": 7}  # train/, split into train and validation
    assert all(counts["validation"].values())
    x, y = data.arrays("train")
    _, y_val = data.arrays("validation")
    assert x.shape == (len(y), 16, 16, 3) and x.dtype == np.uint8
    both = Counter(y.tolist()) + Counter(y_val.tolist())
    assert both == {0: 6, 1: 7}  # cat -> 0, dog -> 1, the blog's order


def test_conversions_to_rgb(tmp_path: Path) -> None:
    gray = write_image(tmp_path / "g.jpg", mode="L", value=200)
    rgba = tmp_path / "t.png"
    from PIL import Image

    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(rgba)  # fully transparent -> white
    cmyk = write_image(tmp_path / "c.jpg", mode="CMYK", value=0)  # no ink -> white
    results = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    metas = image_decoding.decode_files([gray, rgba, cmyk], 8, out=results)
    assert all(m.error is None for m in metas)
    assert results[0].shape == (8, 8, 3)
    assert np.all(np.abs(results[0].astype(int) - 200) <= 2)
    assert np.all(results[1] == 255)
    assert np.all(results[2] >= 250)


def test_second_run_decodes_nothing(
    messy: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DataConfig(data_dir=messy, image_size=16, cache_root=cache_root)
    first = prepare(config)
    assert first.cached.built

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("an image was decoded again")

    monkeypatch.setattr(image_cache, "decode_files", no_decoding)
    second = prepare(config)
    assert not second.cached.built
    assert np.array_equal(
        np.asarray(second.cached.images)[second.cached.rows],
        np.asarray(first.cached.images)[first.cached.rows],
    )
    assert second.cached.rejects == first.cached.rejects


def test_cache_is_keyed_by_content_and_size(messy: Path, cache_root: Path) -> None:
    a = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    b = prepare(DataConfig(data_dir=messy, image_size=12, cache_root=cache_root))
    assert a.cache_dir == b.cache_dir and b.cached.built
    write_image(messy / "train" / "cat.0.jpg", seed=12345)  # same name, new content
    c = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    assert c.cache_dir != a.cache_dir and c.cached.built


def test_cold_cache_hashes_the_files_in_the_decode_pass(
    messy: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fingerprint = image_cache.fingerprint

    def no_separate_hashing(*args: object, **kwargs: object) -> str:
        raise AssertionError("a never-seen folder was hashed before decoding")

    monkeypatch.setattr(image_cache, "fingerprint", no_separate_hashing)
    first = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    monkeypatch.setattr(image_cache, "fingerprint", real_fingerprint)
    # the key computed from the decode pass is the content fingerprint itself
    assert first.cache_dir.name == real_fingerprint(first.discovery)
    assert image_cache.known_key(first.discovery, cache_root) == first.cache_dir.name


def test_changed_bytes_under_an_unchanged_size_and_mtime_are_noticed(
    messy: Path, cache_root: Path
) -> None:
    config = DataConfig(data_dir=messy, image_size=16, cache_root=cache_root)
    first = prepare(config)
    victim = messy / "train" / "cat.0.jpg"
    before = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-10] ^= 0xFF  # same length, different content
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    second = prepare(config)
    assert second.cache_dir != first.cache_dir and second.cached.built


def test_a_copied_data_set_lands_in_the_same_content_cache(
    messy: Path, cache_root: Path, tmp_path: Path
) -> None:
    import shutil

    first = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    copy = shutil.copytree(messy, tmp_path / "copy", copy_function=shutil.copy)  # new mtimes
    config = DataConfig(data_dir=copy, image_size=16, cache_root=cache_root)
    second = prepare(config)  # paths and times never seen: decoded (and hashed) once more
    assert second.cache_dir == first.cache_dir
    third = prepare(config)
    assert not third.cached.built
    np.testing.assert_array_equal(
        np.asarray(third.cached.images)[third.cached.rows],
        np.asarray(first.cached.images)[first.cached.rows],
    )


def test_a_fresh_and_a_reused_cache_give_the_same_batches(messy: Path, cache_root: Path) -> None:
    config = DataConfig(data_dir=messy, image_size=16, cache_root=cache_root)
    fresh = prepare(config)  # decoded into the memory map, handed to TensorFlow without a copy
    reused = prepare(config)  # memory-mapped from disk, handed over without a copy either
    assert fresh.cached.built and not reused.cached.built

    def batches(data):
        return [(x.numpy(), y.numpy()) for ds in data.datasets(4) for x, y in ds]

    for (xa, ya), (xb, yb) in zip(batches(fresh), batches(reused), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_the_cache_on_disk_is_the_array_trained_on(messy: Path, cache_root: Path) -> None:
    config = DataConfig(data_dir=messy, image_size=16, cache_root=cache_root)
    data = prepare(config)
    # decoded straight into the memory-mapped file
    assert data.cached.built and isinstance(data.cached.images, np.memmap)
    # nothing left in staging: the content-keyed folder and the cheap-key memo only
    assert sorted(p.name for p in cache_root.iterdir()) == sorted([data.cache_dir.name, "seen"])
    assert sorted(p.name for p in data.cache_dir.iterdir()) == [
        "images-16.json",
        "images-16.npy",
        "scan.json",
    ]
    on_disk = np.load(data.cache_dir / "images-16.npy")
    np.testing.assert_array_equal(on_disk, np.asarray(data.cached.images))
    x = np.concatenate([x.numpy() for x, _ in data.datasets(4)[1]])
    np.testing.assert_array_equal(x, data.arrays("validation")[0])
    reused = prepare(config)
    assert not reused.cached.built and isinstance(reused.cached.images, np.memmap)


def test_an_interrupted_build_leaves_no_half_cache(
    messy: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    def files() -> list[Path]:
        return sorted(p for p in cache_root.rglob("*")) if cache_root.exists() else []

    real_decode = image_cache.decode_files
    monkeypatch.setattr(image_cache, "decode_files", interrupted)
    with pytest.raises(KeyboardInterrupt):  # a folder never seen
        prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    assert files() == []
    monkeypatch.setattr(image_cache, "decode_files", real_decode)
    prepare(DataConfig(data_dir=messy, image_size=8, cache_root=cache_root))
    before = files()
    monkeypatch.setattr(image_cache, "decode_files", interrupted)
    with pytest.raises(KeyboardInterrupt):  # a known folder at a new size
        prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    assert files() == before
    monkeypatch.setattr(image_cache, "decode_files", real_decode)
    assert prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root)).cached.built


def test_a_build_killed_mid_decode_is_cleaned_up_by_the_next(messy: Path, cache_root: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    host = socket.gethostname()
    left = cache_root / f".building-{host}-{dead}-1"
    left.mkdir(parents=True)
    (left / "images-16.npy.tmp-1").write_bytes(b"half an array")
    mine = cache_root / f".building-{host}-{os.getpid()}-1"  # a live process's: left alone
    mine.mkdir()
    elsewhere = cache_root / f".building-other-host-{dead}-1"  # another host's: not ours to judge
    elsewhere.mkdir()
    prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root))
    assert not left.exists() and mine.exists() and elsewhere.exists()


def test_big_jpegs_are_decoded_at_a_reduced_dct_scale_with_the_same_look(tmp_path: Path) -> None:
    assert image_decoding.dct_factor(375, 500, 227) == 1
    assert image_decoding.dct_factor(375, 500, 128) == 2
    assert image_decoding.dct_factor(3000, 4000, 227) == 8
    assert image_decoding.dct_factor(3000, 4000, None) == 8
    from PIL import Image

    yy, xx = np.mgrid[0:480, 0:640]
    smooth = np.stack([xx * 255 // 639, yy * 255 // 479, (xx + yy) * 255 // 1118], axis=-1)
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth.astype(np.uint8)).save(path, quality=95)
    out = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    (meta,) = image_decoding.decode_files([path], 64, out=out)  # decoded at 1/4 scale
    assert (meta.width, meta.height, meta.error) == (640, 480, None)
    full = np.asarray(Image.open(path).convert("RGB"))
    expected = image_decoding.resize(full, 64)
    assert np.abs(out[0].astype(int) - expected.astype(int)).mean() < 2.0


def test_datasets_shuffle_and_augment(messy: Path, cache_root: Path) -> None:
    data = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root, seed=3))
    train, val = data.datasets(4)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in train], strict=True)
    x = np.concatenate(xs)
    n = len(data.arrays("train")[1])
    assert x.shape == (n, 16, 16, 3) and x.dtype == np.uint8  # the model scales to [0, 1]
    raw, labels = data.arrays("train")
    # a permutation of the cached images, each with its own label
    as_label = {img.tobytes(): lab for img, lab in zip(raw, labels, strict=True)}
    assert [as_label[img.tobytes()] for img in x] == np.concatenate(ys).tolist()
    assert sorted(img.tobytes() for img in x) == sorted(as_label)
    order = lambda ds: [y.numpy().tolist() for _, y in ds]  # noqa: E731
    assert order(data.datasets(4)[0]) == order(data.datasets(4)[0])  # same seed, same order
    other = prepare(DataConfig(data_dir=messy, image_size=16, cache_root=cache_root, seed=4))
    assert [
        img.tobytes() for img in np.concatenate([b.numpy() for b, _ in other.datasets(4)[0]])
    ] != [img.tobytes() for img in x]
    vx = np.concatenate([x.numpy() for x, _ in val])
    vraw, _ = data.arrays("validation")
    np.testing.assert_array_equal(vx, vraw)  # validation: fixed order, no augmentation
    aug, _ = data.datasets(4, augment=True)
    ax = np.concatenate([x.numpy() for x, _ in aug])
    assert ax.shape == (n, 16, 16, 3) and ax.dtype == np.uint8
    assert not np.array_equal(np.sort(ax.reshape(n, -1), 0), np.sort(raw.reshape(n, -1), 0))


@given(
    classes=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 6)), min_size=1, max_size=3
    ),  # per class: train images, validation images
    seed=st.integers(0, 2**31 - 1),
)
def test_selection_folds_are_disjoint_validation_sized_shares_of_train(
    classes: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    train_y = rng.permutation(np.repeat(np.arange(len(classes)), [t for t, _ in classes]))
    val_y = rng.permutation(np.repeat(np.arange(len(classes)), [v for _, v in classes]))
    train = (np.arange(len(train_y)) + 1000, train_y)  # cache rows: distinct from validation's
    validation = (np.arange(len(val_y)), val_y)
    folds = selection_folds(train_y, val_y, seed=seed)
    wanted = [(t // v) for t, v in classes if v > 0]
    assert len(folds) == (min(wanted) if wanted else 0)  # as many as every class can fill
    assert [f.tolist() for f in folds] == [
        f.tolist() for f in selection_folds(train_y, val_y, seed=seed)
    ]  # every process finds the same folds
    seen: set[int] = set()
    for k, fold in enumerate(folds, start=1):
        assert not seen & set(fold.tolist())  # disjoint
        seen |= set(fold.tolist())
        # validation's size and classes
        assert np.bincount(train_y[fold], minlength=len(classes)).tolist() == [
            v for _, v in classes
        ]
        (fit_rows, fit_y), (held_rows, held_y) = selection_fold(train, validation, k, seed=seed)
        assert sorted(held_rows.tolist()) == sorted(train[0][fold].tolist())
        assert not set(fit_rows.tolist()) & set(held_rows.tolist())
        assert set(validation[0].tolist()) <= set(fit_rows.tolist())  # validation trains
        assert len(fit_rows) == len(train_y)  # as many images as a search trial trains on
        labels = dict(zip(train[0].tolist(), train_y.tolist(), strict=True))
        labels |= dict(zip(validation[0].tolist(), val_y.tolist(), strict=True))
        assert [labels[r] for r in fit_rows.tolist()] == fit_y.tolist()
        assert [labels[r] for r in held_rows.tolist()] == held_y.tolist()
    assert selection_fold(train, validation, 0, seed=seed) == (train, validation)
    with pytest.raises(ValueError, match=f"fold {len(folds) + 1} does not exist"):
        selection_fold(train, validation, len(folds) + 1, seed=seed)


def test_a_selection_fold_trains_on_validation_and_validates_on_train_images(
    cache_root: Path, tmp_path: Path
) -> None:
    root = make_blog_layout(tmp_path / "data", train=10, test=2)
    data = prepare(DataConfig(data_dir=root, image_size=16, cache_root=cache_root, seed=5))
    images = lambda ds: sorted(x.tobytes() for b, _ in ds for x in b.numpy())  # noqa: E731
    train, val = (data.arrays(s)[0] for s in ("train", "validation"))
    assert data.fold_count() >= 2
    held_out: list[bytes] = []
    for fold in range(1, data.fold_count() + 1):
        fit, held = data.fold_datasets(fold, 4, seed=1)
        assert set(images(held)) <= {x.tobytes() for x in train}
        assert len(images(held)) == len(val)
        assert set(images(fit)) == {x.tobytes() for x in (*train, *val)} - set(images(held))
        held_out += images(held)
    assert len(held_out) == len(set(held_out))  # each train image held out once at most


def test_subset_decodes_only_the_sample(tmp_path: Path, cache_root: Path) -> None:
    root = make_blog_layout(tmp_path / "d", train=10, test=5)
    data = prepare(DataConfig(data_dir=root, image_size=8, cache_root=cache_root, subset=15))
    assert len(data.cached.files) == 15
    assert data.cached.images.shape[0] == 15
    assert data.counts() == {
        "train": {"cat": 4, "dog": 4},
        "validation": {"cat": 1, "dog": 1},
        "test": {"cat": 3, "dog": 2},
    }


def _inspect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data_pipeline.inspect", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_inspect_json(messy: Path, cache_root: Path) -> None:
    out = _inspect(str(messy), "--json", "--cache-dir", str(cache_root))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {f["path"] for f in report["files"]} == GOOD
    assert {(f["split"], f["label"]) for f in report["files"]} >= {
        ("train", "cat"),
        ("validation", "cat"),
        ("test", "cat"),
    }
    assert {f["path"] for f in report["files"] if f["split"] == "test"} == {
        "test/cat.0.jpg",
        "test/dog.0.jpg",
    }
    assert {s["path"] for s in report["skipped"]} == set(BAD)
    assert all(s["reason"] for s in report["skipped"])
    assert Counter(report["counts"]["train"]) + Counter(report["counts"]["validation"]) == {
        "cat": 6,
        "dog": 7,
    }
    text = _inspect(str(messy), "--cache-dir", str(cache_root))
    assert "skipped 3 of 18 files" in text.stdout
    assert "cat.truncated" not in text.stdout and "dog.truncated.jpg" in text.stdout


def test_inspect_missing_folder_exits_2(tmp_path: Path) -> None:
    out = _inspect(str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr
