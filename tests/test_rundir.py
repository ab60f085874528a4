"""The run directory's small contracts: durations, the run's identity, checkpoint pruning,
the lock, and RunConfig's round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search import rundir
from search.options import OptionError, SearchOptions, parse_duration
from search.space import parse_space


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45m", 2700), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("90", 90), (" 1H5S ", 3605)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1x", "-5m", "1h-30m", "forever"])
def test_parse_duration_refuses_with_the_value_and_the_forms(text: str) -> None:
    with pytest.raises(OptionError, match=r"--time-budget must look like 45m.*but got"):
        parse_duration(text)


def test_the_identity_hash_names_the_settings_not_their_order(tmp_path: Path) -> None:
    a = SearchOptions(trials=5, data_dir=tmp_path, seed=3)
    same = SearchOptions(seed=3, data_dir=tmp_path, trials=5, debug=True, dry_run=True)
    other = SearchOptions(trials=5, data_dir=tmp_path, seed=4)
    more = SearchOptions(trials=60, data_dir=tmp_path, seed=3)  # an extension: the same run
    assert rundir.identity_hash(a.identity()) == rundir.identity_hash(same.identity())
    assert rundir.identity_hash(a.identity()) != rundir.identity_hash(other.identity())
    assert rundir.identity_hash(a.identity()) == rundir.identity_hash(more.identity())
    assert a.resolved_run_dir().name == f"hyperband-227px-{rundir.identity_hash(a.identity())}"
    reordered = dict(reversed(list(a.identity().items())))
    assert rundir.identity_hash(reordered) == rundir.identity_hash(a.identity())


def test_a_run_directory_refuses_other_settings_and_says_which(tmp_path: Path) -> None:
    rundir.write_json_atomic(tmp_path / "config.json", {"identity": {"trials": 5, "seed": 3}})
    assert rundir.check_identity(tmp_path, {"trials": 5, "seed": 3}) is True
    assert rundir.check_identity(tmp_path, {"seed": 3}) is True  # --trials may grow
    with pytest.raises(rundir.RunDirError, match=r"seed: 3 -> 4.*another --run-dir"):
        rundir.check_identity(tmp_path, {"seed": 4})
    assert rundir.check_identity(tmp_path / "new", {"trials": 6}) is False


def test_checkpoint_pruning_keeps_what_is_needed_and_running(tmp_path: Path) -> None:
    for trial in ("0000", "0001", "0002", "0003"):
        path = rundir.checkpoint_path(tmp_path, trial)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"w")
    # 0003 is still running (not ended); 0001 will be promoted; 0000 and 0002 are done with
    deleted = rundir.prune_checkpoints(tmp_path, keep={"0001"}, ended={"0000", "0001", "0002"})
    assert deleted == ["0000", "0002"]
    left = sorted(p.parent.name for p in tmp_path.glob("trials/*/checkpoint.npz"))
    assert left == ["0001", "0003"]


def test_the_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    import subprocess
    import sys

    with rundir.locked(tmp_path):
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from search import rundir\n"
                "try:\n    rundir.locked(Path(sys.argv[1])).__enter__()\n"
                "except rundir.RunDirError as e:\n    print(e)",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    import os

    assert f"is in use by pid {os.getpid()}" in other.stdout
    with rundir.locked(tmp_path):  # released: taken again
        pass


def test_run_config_round_trips_and_refuses_damage(tmp_path: Path) -> None:
    from data_pipeline.pipeline import DataConfig

    opts = SearchOptions(data_dir=tmp_path / "data", image_size=67, width=0.5)
    space = parse_space("[weight_decay]\nlow = 1e-5\n")
    config = rundir.RunConfig(
        identity=opts.identity(),
        options=opts.to_dict(),
        space=space,
        data_config=opts.data_config(),
        classes=("cat", "dog"),
        data={"counts": {"test": {"cat": 3, "dog": 4}}},
        versions={"keras": "3"},
        command="python -m search.run",
        created_at="now",
    )
    config.write(tmp_path)
    again = rundir.RunConfig.read(tmp_path)
    assert again == config
    assert again.space == space and isinstance(again.data_config, DataConfig)
    assert (again.image_size, again.width, again.split_size("test")) == (67, 0.5, 7)
    on_disk = json.loads((tmp_path / "config.json").read_text())
    assert on_disk["baseline"]["weight_decay"] == 0.0 and on_disk["seed"] == opts.seed
    (tmp_path / "config.json").write_text('{"identity": {}}')
    with pytest.raises(rundir.RunDirError, match="older alexnet-tuner"):
        rundir.RunConfig.read(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(rundir.RunDirError, match="cannot be read"):
        rundir.RunConfig.read(tmp_path)
    with pytest.raises(rundir.RunDirError, match="not a search run directory"):
        rundir.RunConfig.read(tmp_path / "elsewhere")
