"""The holdout-gap benchmark scores further photos through the training cache's decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.holdout_gap import holdout_arrays
from data_pipeline.pipeline import DataConfig, prepare
from tests.conftest import make_flat_layout, write_image


def test_further_photos_get_the_cache_pixels_and_their_labels(
    tmp_path: Path, cache_root: Path
) -> None:
    folder = make_flat_layout(tmp_path / "pool", per_class=5)
    (folder / "notes.txt").write_text("not a photo")
    data = prepare(DataConfig(data_dir=folder, image_size=32, cache_root=cache_root))
    pixels, labels = holdout_arrays(folder, data.classes, 32)
    assert len(labels) == 10 and labels.tolist() == [0] * 5 + [1] * 5  # cat.*, then dog.*
    names = sorted(p.name for p in folder.glob("*.jpg"))
    for i, f in enumerate(data.cached.files):  # every cached image, row for row
        j = names.index(Path(f.path).name)
        assert np.array_equal(pixels[j], data.cached.images[data.cached.rows[i]])
        assert data.classes[labels[j]] == f.label


def test_a_folder_without_labelled_photos_or_with_a_broken_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no cat/dog\.N\.jpg photos"):
        holdout_arrays(tmp_path / "empty", ("cat", "dog"), 32)
    write_image(tmp_path / "some" / "cat.1.jpg", seed=1)
    (tmp_path / "some" / "dog.2.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(SystemExit, match=r"1 of 2 photos do not decode \(first: dog\.2\.jpg: "):
        holdout_arrays(tmp_path / "some", ("cat", "dog"), 32)
