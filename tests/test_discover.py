"""Labels, layouts and splits: from the file-name prefix or class folder only."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import pytest

from data_pipeline.archive import check_members, extract_once
from data_pipeline.discover import discover, label_from_name, stratified_split, take_subset
from data_pipeline.errors import DataError
from tests.conftest import make_blog_layout, make_flat_layout, write_image


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("cat.123.jpg", "cat"),
        ("dog.45.jpg", "dog"),
        ("dog.concatenate.jpg", "dog"),
        ("Cat.7.JPG", "cat"),
        ("dog.12", "dog"),  # no extension: judged by content elsewhere, labelled by prefix here
        ("123.jpg", None),
        ("cat.jpg", None),
        ("IMG_0001.jpeg", None),
        ("12.34.jpg", None),
    ],
)
def test_label_from_name(name: str, label: str | None) -> None:
    assert label_from_name(name) == label


def test_blog_layout_under_a_parent_named_like_a_class(tmp_path: Path) -> None:
    root = make_blog_layout(tmp_path / "data" / "concatenated", train=5, test=2)
    found = discover(root, val_fraction=0.2)
    assert found.layout == "train-test"
    assert found.classes == ("cat", "dog")
    labels = Counter((f.split, f.label) for f in found.files)
    assert labels == {
        ("train", "cat"): 4,
        ("train", "dog"): 4,
        ("validation", "cat"): 1,
        ("validation", "dog"): 1,
        ("test", "cat"): 2,
        ("test", "dog"): 2,
    }
    assert all(f.path.startswith(("train/", "test/")) for f in found.files)
    # the blog's test/ is the test set (its 87.05% was measured there); validation is cut
    # from train/ and never touches test/
    assert all(f.path.startswith("train/") for f in found.files if f.split == "validation")
    assert {f.path for f in found.files if f.split == "test"} == {
        "test/cat.0.jpg",
        "test/cat.1.jpg",
        "test/dog.0.jpg",
        "test/dog.1.jpg",
    }


def test_flat_layout_is_split_stratified_and_reproducibly(tmp_path: Path) -> None:
    root = make_flat_layout(tmp_path / "train", per_class=10)
    a = discover(root, seed=7, val_fraction=0.2)
    b = discover(root, seed=7, val_fraction=0.2)
    c = discover(root, seed=8, val_fraction=0.2)
    assert a.layout == "flat"
    assert a.files == b.files
    assert {f.path for f in a.files if f.split == "validation"} != {
        f.path for f in c.files if f.split == "validation"
    }
    assert Counter((f.split, f.label) for f in a.files) == {
        ("train", "cat"): 6,
        ("train", "dog"): 6,
        ("validation", "cat"): 2,
        ("validation", "dog"): 2,
        ("test", "cat"): 2,
        ("test", "dog"): 2,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n_cat", "n_dog"), [(3, 3), (7, 40), (100, 101), (1000, 13)])
@pytest.mark.parametrize(("val", "test"), [(0.2, 0.2), (0.1, 0.3), (0.45, 0.05), (0.3, 0.0)])
def test_three_way_split_is_disjoint_complete_stratified_and_reproducible(
    seed: int, n_cat: int, n_dog: int, val: float, test: float
) -> None:
    labels = {f"cat.{i}.jpg": "cat" for i in range(n_cat)}
    labels |= {f"dog.{i}.jpg": "dog" for i in range(n_dog)}
    split = stratified_split(labels, seed=seed, val_fraction=val, test_fraction=test)
    assert split == stratified_split(labels, seed=seed, val_fraction=val, test_fraction=test)
    assert set(split) == set(labels)  # every image in exactly one split
    wanted = {"train": 1 - val - test, "validation": val, "test": test}
    for label, n in (("cat", n_cat), ("dog", n_dog)):
        got = Counter(s for p, s in split.items() if labels[p] == label)
        for name, share in wanted.items():
            if share == 0:
                assert got[name] == 0
                continue
            assert got[name] >= 1  # every split has every class
            assert abs(got[name] - share * n) <= 1.5  # in proportion (rounding, minimum of 1)


@pytest.mark.parametrize(("val", "test"), [(0.0, 0.2), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)])
def test_bad_fractions_name_the_option(val: float, test: float) -> None:
    with pytest.raises(DataError, match=r"--val-fraction|--test-fraction"):
        stratified_split({"cat.1.jpg": "cat"}, seed=0, val_fraction=val, test_fraction=test)


def test_split_does_not_depend_on_other_classes() -> None:
    cats = {f"cat.{i}.jpg": "cat" for i in range(10)}
    both = {**cats, **{f"dog.{i}.jpg": "dog" for i in range(10)}}
    only_cats = stratified_split(cats, seed=1, val_fraction=0.3)
    with_dogs = stratified_split(both, seed=1, val_fraction=0.3)
    assert {p: s for p, s in with_dogs.items() if p in cats} == only_cats


def test_class_folders_labels(tmp_path: Path) -> None:
    root = tmp_path / "PetImages"
    for i in range(5):
        write_image(root / "Cat" / f"{i}.jpg", seed=i)
        write_image(root / "Dog" / "nested" / "deeper" / f"{i}.jpg", seed=10 + i)
        write_image(root / "Horse" / f"h{i}.png", fmt="PNG", seed=20 + i)
    (root / "Empty").mkdir()
    (tmp_path / "readme.txt").write_text("Microsoft's archive has a readme beside the folder")
    found = discover(tmp_path)
    assert found.layout == "class-folders"
    assert found.classes == ("Cat", "Dog", "Horse")
    assert Counter(f.label for f in found.files) == {"Cat": 5, "Dog": 5, "Horse": 5}
    assert all(f.path.startswith("PetImages/") for f in found.files)
    assert any("Empty" in n for n in found.notes)
    assert {f.split for f in found.files if f.label == "Dog"} == {"train", "validation", "test"}


def test_unlabelled_files_are_listed_not_assigned(tmp_path: Path) -> None:
    root = make_flat_layout(tmp_path / "train", per_class=4)
    write_image(root / "1234.jpg", seed=5)
    write_image(root / "holiday.jpg", seed=6)
    found = discover(root)
    assert set(found.unlabelled) == {"1234.jpg", "holiday.jpg"}
    assert "1234.jpg" not in {f.path for f in found.files}


def test_clutter_is_ignored(tmp_path: Path) -> None:
    root = make_blog_layout(tmp_path, train=2, test=1)
    (root / "train" / "Thumbs.db").write_bytes(b"\x00" * 100)
    (root / "train" / ".DS_Store").write_bytes(b"\x00Bud1")
    (root / "train" / "notes.txt").write_text("hello")
    (root / "train" / "._cat.0.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    found = discover(root)
    assert len(found.files) == 6
    assert found.unlabelled == ()


@pytest.mark.parametrize("setup", ["missing", "empty", "one-class", "not-images"])
def test_bad_folders_are_clear_errors(tmp_path: Path, setup: str) -> None:
    root = tmp_path / "data"
    if setup != "missing":
        root.mkdir()
    if setup == "one-class":
        for i in range(3):
            write_image(root / f"cat.{i}.jpg", seed=i)
    if setup == "not-images":
        (root / "a.txt").write_text("x")
    with pytest.raises(DataError) as err:
        discover(root)
    message = str(err.value)
    assert str(root) in message
    if setup == "one-class":
        assert "'cat'" in message and "two classes" in message
    if setup == "missing":
        assert "data_pipeline.download" in message


def test_subset_is_stratified_and_seeded(tmp_path: Path) -> None:
    root = make_flat_layout(tmp_path / "train", per_class=20)
    found = discover(root, val_fraction=0.25, test_fraction=0.25)
    sub = take_subset(found, 16, seed=3)
    assert len(sub.files) == 16
    assert Counter((f.split, f.label) for f in sub.files) == {
        ("train", "cat"): 4,
        ("train", "dog"): 4,
        ("validation", "cat"): 2,
        ("validation", "dog"): 2,
        ("test", "cat"): 2,
        ("test", "dog"): 2,
    }
    assert take_subset(found, 16, seed=3).files == sub.files
    assert take_subset(found, 10_000).files == found.files
    with pytest.raises(DataError, match="--subset"):
        take_subset(found, 5)


def test_zip_is_extracted_once(tmp_path: Path, cache_root: Path) -> None:
    src = make_blog_layout(tmp_path / "src", train=2, test=1)
    archive = tmp_path / "dogs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.jpg")):
            zf.write(p, p.relative_to(src).as_posix())
    first = extract_once(archive, cache_root)
    marker = first / "train" / "cat.0.jpg"
    mtime = marker.stat().st_mtime_ns
    assert extract_once(archive, cache_root) == first
    assert marker.stat().st_mtime_ns == mtime
    assert len(discover(first).files) == 6


@pytest.mark.parametrize("member", ["../evil.jpg", "/etc/evil.jpg", "a/../../evil.jpg"])
def test_zip_slip_is_refused(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/cat.0.jpg", b"x")
        zf.writestr(member, b"x")
    with pytest.raises(DataError, match="outside the target"):
        extract_once(archive, tmp_path / "cache")
    assert not (tmp_path / "evil.jpg").exists()


def test_absurd_uncompressed_size_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("train/cat.0.jpg", b"\0" * (4 * 2**20))
    with zipfile.ZipFile(archive) as zf, pytest.raises(DataError, match="zip bomb"):
        check_members(zf)
    stored = tmp_path / "big.zip"
    with zipfile.ZipFile(stored, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("train/cat.0.jpg", b"\0" * (2 * 2**20))
    with zipfile.ZipFile(stored) as zf, pytest.raises(DataError, match="limit"):
        check_members(zf, max_bytes=2**20)


def test_kaggle_competition_layout_splits_train_and_lists_test1(tmp_path: Path) -> None:
    root = make_flat_layout(tmp_path / "kaggle" / "train", per_class=10).parent
    for i in range(3):
        write_image(root / "test1" / f"{i + 1}.jpg", seed=50 + i)
    found = discover(root, val_fraction=0.2, test_fraction=0.3)
    assert found.layout == "train-split"
    assert found.classes == ("cat", "dog")
    assert Counter((f.split, f.label) for f in found.files) == {
        ("train", "cat"): 5,
        ("train", "dog"): 5,
        ("validation", "cat"): 2,
        ("validation", "dog"): 2,
        ("test", "cat"): 3,
        ("test", "dog"): 3,
    }
    assert all(f.path.startswith("train/") for f in found.files)
    assert found.unlabelled == ("test1/1.jpg", "test1/2.jpg", "test1/3.jpg")
    assert any("test is a seeded, stratified 30%" in n for n in found.notes)


def test_train_folder_of_class_folders_alone(tmp_path: Path) -> None:
    for i in range(5):
        write_image(tmp_path / "train" / "Cat" / f"{i}.jpg", seed=i)
        write_image(tmp_path / "train" / "Dog" / f"{i}.jpg", seed=10 + i)
    found = discover(tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert found.layout == "train-split" and found.classes == ("Cat", "Dog")
    assert Counter(f.split for f in found.files) == {"train": 6, "validation": 2, "test": 2}


def test_train_val_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    root = make_blog_layout(tmp_path / "d", train=4, test=2)
    for c in ("cat", "dog"):
        write_image(root / "val" / f"{c}.9.jpg", seed=hash(c) % 100)
    found = discover(root)
    assert Counter(f.split for f in found.files) == {"train": 8, "validation": 2, "test": 4}
    assert {f.path for f in found.files if f.split == "validation"} == {
        "val/cat.9.jpg",
        "val/dog.9.jpg",
    }


def test_a_labelled_test_folder_wins_over_kaggles_unlabelled_test1(tmp_path: Path) -> None:
    root = make_blog_layout(tmp_path / "d", train=5, test=2)
    for i in range(3):
        write_image(root / "test1" / f"{i + 1}.jpg", seed=60 + i)
    found = discover(root)
    assert found.layout == "train-test"
    assert {f.path for f in found.files if f.split == "test"} == {
        "test/cat.0.jpg",
        "test/cat.1.jpg",
        "test/dog.0.jpg",
        "test/dog.1.jpg",
    }


def test_many_small_members_that_add_up_to_a_bomb_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "small-bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(400):  # each member well under 1 MiB, 100 MB in all
            zf.writestr(f"train/cat.{i}.jpg", b"\0" * 250_000)
    assert archive.stat().st_size < 2**20
    with zipfile.ZipFile(archive) as zf, pytest.raises(DataError, match="in all"):
        check_members(zf)


def test_a_corrupt_zip_is_a_clean_error_and_leaves_no_folder(tmp_path: Path) -> None:
    src = make_blog_layout(tmp_path / "src", train=2, test=1)
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.jpg")):
            zf.write(p, p.relative_to(src).as_posix())
    data = bytearray(archive.read_bytes())
    start = data.find(b"\xff\xd8\xff")
    data[start + 200 : start + 260] = b"\0" * 60
    archive.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    for _ in range(2):  # and again: no partial folder left by the first try
        with pytest.raises(DataError, match="corrupt"):
            extract_once(archive, cache)
        assert not [p for p in (cache / "extracted").iterdir() if not p.name.endswith(".lock")]


def test_two_processes_extracting_the_same_archive_first_time(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = make_blog_layout(tmp_path / "src", train=20, test=10)
    archive = tmp_path / "dogs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.jpg")):
            zf.write(p, p.relative_to(src).as_posix())
    code = (
        "import sys; from pathlib import Path; from data_pipeline.archive import extract_once; "
        "from data_pipeline.discover import discover; "
        "t = extract_once(Path(sys.argv[1]), Path(sys.argv[2])); print(len(discover(t).files))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(archive), str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert [o[0].strip() for o in outs] == ["60"] * 3
