"""End-to-end searches on tiny data, in subprocesses as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from search.confirm import best_judge_run, is_flagged, refit_learned, refit_window
from search.rundir import locked
from search.stats import VERDICTS, at_chance
from tests.conftest import make_blog_layout

pytestmark = pytest.mark.slow

TINY_SPACE = (
    "[dense_units]\nlow = 8\nhigh = 32\nstep = 8\n[learning_rate]\nlow = 1e-4\nhigh = 1e-2\n"
    # a parameter the default space holds fixed, opened: every output must carry it
    "[weight_decay]\nlow = 1e-6\nhigh = 1e-3\n"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    data = make_blog_layout(root / "data", train=8, test=4)
    space = root / "space.toml"
    space.write_text(TINY_SPACE)
    return {"data": data, "space": space, "cache": root / "cache"}


def search_args(tiny: dict[str, Path], run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "search.run",
        "--data-dir",
        str(tiny["data"]),
        "--image-size",
        "67",
        "--width",
        "0.125",
        "--batch-size",
        "8",
        "--space",
        str(tiny["space"]),
        "--cache-dir",
        str(tiny["cache"]),
        "--run-dir",
        str(run_dir),
        "--confirm",  # most tests are about the search; the confirmation has its own tests
        "0",
        "--val-fraction",  # 2 of each class's 8 train/ images validate (the default, 15%: 1)
        "0.25",
        # one trial process per run (each start loads TensorFlow): replacing it every few
        # trainings has tests of its own, which pass a smaller value after this one
        "--trials-per-worker",
        "100",
        # float32: at these tiny sizes bfloat16 (what auto picks on an AVX-512 BF16 CPU) is
        # slower; each precision has its own tests (test_gpu_code_paths_run_on_the_cpu)
        "--precision",
        "float32",
        *extra,
    ]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def _cli(main, argv: list[str], capsys: pytest.CaptureFixture[str]):
    """A command-line entry point run in this process (no TensorFlow start-up per call)."""
    capsys.readouterr()
    code = main(argv)
    out = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out.out, out.err)


@pytest.mark.parametrize("engine", ["hyperband", "random", "bayesian", "optuna"])
def test_two_trial_search_per_engine(
    tiny: dict[str, Path], tmp_path: Path, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.run import main

    run_dir = tmp_path / "run"
    args = search_args(tiny, run_dir, "--engine", engine, "--trials", "2", "--max-epochs", "2")
    out = _cli(main, args[3:], capsys)  # in this process: the command line without python -m
    assert out.returncode == 0, out.stdout + out.stderr
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert trials["trial_id"].iloc[0] == "baseline"
    search = trials[trials["trial_id"] != "baseline"]
    assert len(search) == 2 and search["trial_id"].is_unique
    assert set(trials["status"]) <= {"completed", "pruned"}
    assert trials["val_accuracy"].between(0, 1).all()
    assert {
        "dropout",
        "lrn",
        "dense_units",
        "learning_rate",
        "best_epoch",
        "epochs",
        "seconds",
        "params",
        "error",
        "peak_rss_mb",
    } <= set(trials.columns)
    assert search["dense_units"].isin([8, 16, 24, 32]).all()
    assert search["weight_decay"].between(1e-6, 1e-3).all()
    assert trials["weight_decay"].iloc[0] == 0.0  # the baseline is the blog's: no decay
    history = pd.read_csv(run_dir / "history.csv", dtype={"trial_id": str})
    assert set(history["trial_id"]) == set(trials["trial_id"])
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history["metric"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["identity"]["engine"] == engine
    assert "keras" in config["versions"] and config["command"].startswith("python -m search.run")
    export = json.loads((run_dir / "export.json").read_text())
    assert export["equal"] and export["val_accuracy_in_memory"] == export["val_accuracy_reloaded"]
    assert export["val_accuracy_keras_reloaded"] == export["val_accuracy_in_memory"]
    source = trials.set_index("trial_id").loc[export["source_trial"]]
    assert export["params"]["weight_decay"] == pytest.approx(source["weight_decay"])
    report = (run_dir / "report.html").read_text()
    assert '"label":"weight_decay"' in report  # parallel coordinates
    assert '"text":"weight_decay"' in report  # its slice panel
    # only the exported trial's checkpoint is left on disk
    assert [p.parent.name for p in run_dir.glob("trials/*/checkpoint.npz")] == [
        export["source_trial"]
    ]
    if engine == "hyperband":
        assert "Hyperband: max 2 epochs" in out.stdout
    # the same command with a larger --trials continues the search: nothing lost or repeated
    more = search_args(tiny, run_dir, "--engine", engine, "--trials", "4", "--max-epochs", "2")
    again = _cli(main, more[3:], capsys)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "extending the search: 2 done, 2 to run" in again.stdout
    extended = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert len(extended) == 5 and extended["trial_id"].is_unique  # baseline + 4
    kept = extended.set_index("trial_id").loc[trials["trial_id"], ["ended_at", "val_accuracy"]]
    assert kept.equals(trials.set_index("trial_id")[["ended_at", "val_accuracy"]])
    assert json.loads((run_dir / "export.json").read_text())["equal"]


def test_export_reloads_exactly_and_predicts(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search import export as export_cli
    from search import predict as predict_cli

    run_dir = tmp_path / "run"
    out = run(
        search_args(
            tiny,
            run_dir,
            "--trials",
            "1",
            "--max-epochs",
            "1",
            "--engine",
            "random",
            "--no-baseline",
        )
    )
    assert out.returncode == 0, out.stdout + out.stderr
    export = json.loads((run_dir / "export.json").read_text())
    assert export["val_accuracy_in_memory"] == export["val_accuracy_reloaded"]
    assert export["passed"] and export["problems"] == []
    assert export["serve_bytes"]["undecodable"] == 0
    assert export["max_probability_difference"] < 1e-5
    assert export["n_validation"] == 4  # a fifth of train/ (8 per class)
    assert export["n_test"] == 8  # the blog layout's test/ folder
    assert export["test_accuracy_in_memory"] == export["test_accuracy_reloaded"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] == "unconfirmed" and summary["confirmed"] is False
    assert set(export["files"]) >= {"best_model/saved_model.pb", "best_model.keras"}
    # each weight stored once (Keras's export alone stores each twice)
    import keras
    import tensorflow as tf

    from models.alexnet import custom_objects

    stored = tf.train.load_checkpoint(str(run_dir / "best_model" / "variables" / "variables"))
    values = [k for k in stored.get_variable_to_shape_map() if k.endswith("VARIABLE_VALUE")]
    saved = keras.saving.load_model(run_dir / "best_model.keras", custom_objects=custom_objects())
    weights = saved.variables  # seeds too
    assert len(values) == len(weights)
    assert export["saved_model_bytes"] + export["keras_bytes"] == export["size_bytes"]
    # --tta flip, the default: the served model averages each image with its mirror image, so
    # an image and its mirror get the same probabilities, the mean of what the same weights
    # exported with --tta none give the two
    assert export["tta"] == "flip" and summary["exported"]["tta"] == "flip"
    assert "mirror image" in export["model_card"]["test_time"]
    report = (run_dir / "report.html").read_text()
    assert report.count("each image scored with its mirror image") == 2  # summary, Best model
    size = export["params"]["image_size"]
    pixels = np.random.default_rng(0).integers(0, 256, (6, size, size, 3), dtype=np.uint8)
    flipped = np.ascontiguousarray(pixels[:, :, ::-1])

    def served(x: np.ndarray) -> np.ndarray:
        serve = tf.saved_model.load(str(run_dir / "best_model")).signatures["serve"]
        return next(iter(serve(tf.constant(x)).values())).numpy()

    both = served(pixels)
    np.testing.assert_allclose(served(flipped), both, atol=1e-6)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(
        json.dumps(config | {"options": config["options"] | {"tta": "none"}})
    )
    assert _cli(export_cli.main, [str(run_dir)], capsys).returncode == 0
    assert json.loads((run_dir / "export.json").read_text())["tta"] == "none"
    plain, mirrored = served(pixels), served(flipped)
    assert np.abs(plain - mirrored).max() > 1e-4  # one look: not mirror-symmetric
    np.testing.assert_allclose((plain + mirrored) / 2, both, atol=1e-6)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / ".export-99999").mkdir()  # left by an export killed mid-way
    # serve_bytes must agree with the training path on 99.5% of the test files: asked for
    # more than all of them, the same export fails its check, says why, and is recorded so
    import search.serving

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search.serving, "MIN_LABEL_AGREEMENT", 1.01)
        skewed = _cli(export_cli.main, [str(run_dir)], capsys)
    assert skewed.returncode == 1 and "export check FAILED" in skewed.stdout
    assert "differs from the training decoder" in skewed.stderr
    assert not list(run_dir.glob(".export-*"))  # staging folders never stay behind
    failed = json.loads((run_dir / "export.json").read_text())
    assert not failed["passed"] and failed["equal"] and len(failed["problems"]) == 1
    again = _cli(export_cli.main, [str(run_dir)], capsys)
    assert again.returncode == 0 and "export check passed" in again.stdout
    redone = json.loads((run_dir / "export.json").read_text())
    assert redone["passed"] and set(redone["files"]) == set(export["files"])
    assert redone["val_accuracy_in_memory"] == export["val_accuracy_in_memory"]
    with locked(run_dir):  # a search (or another export) holds the run: refused, untouched
        busy = _cli(export_cli.main, [str(run_dir)], capsys)
    assert busy.returncode == 2 and "in use" in busy.stderr
    assert json.loads((run_dir / "export.json").read_text()) == redone
    moved = tmp_path / "moved-data-run"
    moved.mkdir()
    config = json.loads((run_dir / "config.json").read_text())
    config["data_config"]["data_dir"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    gone = _cli(export_cli.main, [str(moved)], capsys)
    assert gone.returncode == 2 and "put the data set back" in gone.stderr
    nothing = _cli(export_cli.main, [str(tmp_path / "no-such-run")], capsys)
    assert nothing.returncode == 2 and not (tmp_path / "no-such-run").exists()
    images = sorted((tiny["data"] / "test").glob("*.jpg"))[:5]
    pred = _cli(
        predict_cli.main, ["--json", str(run_dir / "best_model"), *map(str, images)], capsys
    )
    assert pred.returncode == 0, pred.stderr
    rows = json.loads(pred.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(r["label"] in ("cat", "dog") and 0.5 <= r["probability"] <= 1.0 for r in rows)
    # in batches of 2 (3 batches, the last one short): the same answers, up to float32
    # rounding (oneDNN may sum in another order for another batch size)
    small = _cli(
        predict_cli.main,
        ["--json", "--batch-size", "2", str(run_dir / "best_model"), *map(str, images)],
        capsys,
    )
    assert small.returncode == 0
    in_twos = json.loads(small.stdout)
    assert [(r["path"], r["label"]) for r in in_twos] == [(r["path"], r["label"]) for r in rows]
    for a, b in zip(in_twos, rows, strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)
    # a damaged export is a message and exit 2, never a traceback (one run as a user runs it)
    import shutil

    for damage in ("saved_model.pb", "labels.json"):
        broken = tmp_path / f"broken-{damage}"
        shutil.copytree(run_dir / "best_model", broken)
        (broken / damage).write_bytes(b"\x00garbage")
        bad = _cli(predict_cli.main, [str(broken), str(images[0])], capsys)
        assert bad.returncode == 2, bad.stderr[-1000:]
        assert "python -m search.export" in bad.stderr
    as_user = run([sys.executable, "-m", "search.predict", str(broken), str(images[0])])
    assert as_user.returncode == 2 and "Traceback" not in as_user.stderr
    # torn files: refused by name with exit 2 (the report's predictions, a checkpoint)
    from reports import build as build_cli

    preds = run_dir / "validation_predictions.csv"
    kept = preds.read_bytes()
    preds.write_bytes(b"")
    torn = _cli(build_cli.main, [str(run_dir)], capsys)
    assert torn.returncode == 2 and "validation_predictions.csv" in torn.stderr
    preds.write_bytes(kept)
    ckpt = next((run_dir / "trials").glob("*/checkpoint.npz"))
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    cut = _cli(export_cli.main, [str(run_dir)], capsys)
    assert cut.returncode == 2 and "cannot be read whole" in cut.stderr
    assert str(ckpt) in cut.stderr


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(pd.read_csv(path)) >= n:
            return
        assert proc.poll() is None, "search ended before it could be killed"
        time.sleep(0.2)
    raise AssertionError(f"{path} never reached {n} rows")


def test_kill_9_during_an_extension_and_resume(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.run import main

    run_dir = tmp_path / "run"
    first = search_args(tiny, run_dir, "--trials", "2", "--max-epochs", "3")
    assert _cli(main, first[3:], capsys).returncode == 0
    done = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    args = search_args(
        tiny, run_dir, "--trials", "5", "--max-epochs", "3", "--trials-per-worker", "2"
    )
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_rows(run_dir / "trials.csv", 4, proc)  # baseline + 2 + the first new trial
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "running"  # nothing could mark it: a report calls it crashed
    out = run(args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming" in out.stdout
    after = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    search = after[after["trial_id"] != "baseline"]
    shown = after[["trial_id", "status", "error"]].to_string()
    assert len(search) == 5 and after["trial_id"].is_unique, shown
    assert (search["status"] == "completed").all(), shown
    assert (after["trial_id"] == "baseline").sum() == 1  # the baseline is not trained again
    kept = after.set_index("trial_id").loc[before["trial_id"], "ended_at"]
    assert list(kept) == list(before["ended_at"])  # finished trials were not run again
    first_values = after.set_index("trial_id").loc[done["trial_id"], "learning_rate"]
    assert list(first_values) == list(done["learning_rate"])
    assert json.loads((run_dir / "config.json").read_text())["options"]["trials"] == 5
    export = json.loads((run_dir / "export.json").read_text())
    assert export["equal"]
    # the same command once more: its answer again, no warm-up, nothing trained or exported
    done = _cli(main, args[3:], capsys)
    assert done.returncode == 0 and "this search is finished" in done.stdout
    assert "warm-up" not in done.stdout and "exporting" not in done.stdout
    assert json.loads((run_dir / "export.json").read_text())["created_at"] == export["created_at"]
    # fewer trials than done: refused, with the reason and the fix, and nothing touched
    fewer = _cli(main, search_args(tiny, run_dir, "--trials", "3", "--max-epochs", "3")[3:], capsys)
    assert fewer.returncode == 2 and "fewer than the 5 trials" in fewer.stderr
    assert "--trials 5 or more" in fewer.stderr
    other = _cli(main, search_args(tiny, run_dir, "--trials", "6", "--max-epochs", "4")[3:], capsys)
    assert other.returncode == 2 and "max_epochs: 3 -> 4" in other.stderr
    assert pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str}).equals(after)


def test_confirmation_resumes_after_kill_9_and_agrees_everywhere(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(
        tiny, run_dir, "--trials", "2", "--max-epochs", "2", "--engine", "random", "--confirm", "2"
    )
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the first row is the search's baseline run's (the judge's baseline seed 1), written just
    # before its trial row: a kill between the two trains the baseline again, by design. The
    # second is the first selection run's: inside the confirmation phase
    _wait_for_rows(run_dir / "confirm.csv", 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(run_dir / "confirm.csv")
    assert "select" in set(before["stage"])
    out = run(args)
    assert out.returncode == 0, out.stdout + out.stderr
    after = pd.read_csv(run_dir / "confirm.csv", dtype={"trial_id": str})
    # the default protocol: 2 configurations x 2 seeds select on validation, the winner and
    # the baseline x 2 fresh seeds judge on test, two refits of the winner (--refit-seeds 2)
    assert after["run_id"].is_unique and (after["status"] == "completed").all()
    assert after["stage"].value_counts().to_dict() == {"select": 4, "judge": 4, "refit": 2}
    judged = after[after["stage"] == "judge"]
    assert "baseline" in set(judged["candidate"]) and judged["trial_id"].nunique() == 2
    assert not set(judged["seed"]) & set(after.loc[after["stage"] == "select", "seed"])
    # each selection seed is validated on its own fold of train, the same for each candidate
    selected = after[after["stage"] == "select"]
    assert (selected["val_fold"] == selected["seed_index"]).all()
    assert after.loc[after["stage"] != "select", "val_fold"].isna().all()
    # the selection ranks each run by its last epochs' validation mean, never above its best
    chosen = after[after["stage"] != "refit"]
    assert chosen["val_tail"].notna().all()
    assert (chosen["val_tail"] <= chosen["val_accuracy"] + 1e-9).all()
    kept = after.set_index("run_id").loc[before["run_id"], "ended_at"]
    assert list(kept) == list(before["ended_at"])  # finished runs were not run again
    trials = pd.read_csv(run_dir / "trials.csv")
    assert len(trials) == 3  # the search was not repeated either (2 trials + baseline)
    # the search's baseline is the judge's baseline seed 1: the blog's configuration is
    # trained K times, not K + 1, on the judge's fresh seed
    base = trials[trials["trial_id"] == "baseline"].iloc[0]
    first = after.set_index("run_id").loc["confirm-baseline-s1"]
    assert (first["val_accuracy"], first["best_epoch"]) == (
        pytest.approx(base["val_accuracy"]),
        base["best_epoch"],
    )
    assert first["seed"] not in set(after.loc[after["stage"] == "select", "seed"])
    trained = set(pd.read_csv(run_dir / "costs.csv", dtype={"trial_id": str})["trial_id"])
    assert "baseline" in trained and "confirm-baseline-s1" not in trained
    assert {"confirm-baseline-s2", f"confirm-{winner_id(after)}-s1"} <= trained
    assert (after["n_test"] == 8).all() and (after["n_validation"] == 4).all()

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["confirm_seeds"] == 2 and summary["test_n"] == 8
    assert "last epochs" in summary["selection"]["rule"]
    assert "fold of the train images" in summary["selection"]["validated_on"]
    assert summary["selection"]["on_folds"] is True
    assert summary["verdict"] in VERDICTS
    winner = summary["winner"]["trial_id"]
    w = judged[judged["trial_id"] == winner]
    assert summary["winner"]["test_accuracy_seeds"] == pytest.approx(list(w["test_accuracy"]))
    export = json.loads((run_dir / "export.json").read_text())
    assert export["equal"] and export["source_run"] == summary["exported"]["run_id"]
    refits = after[after["stage"] == "refit"].sort_values("seed_index")
    assert list(refits["run_id"]) == [f"refit-{winner}", f"refit-{winner}-s2"]
    assert (refits["trial_id"] == winner).all() and refits["seed"].nunique() == 2
    refit = refits.iloc[0]
    assert (refits["epochs"] == int(np.ceil(np.median(w["best_epoch"])))).all()
    window = refit_window(int(refit["epochs"]))  # the mean of its last epochs' weights
    assert (refits["averaged_epochs"] == window).all()
    # the refits that learned the images they trained on ship, their probabilities averaged
    # (on the tiny fixture one can fail to learn); when none did while the winner's best
    # judge run (by validation) learned, that run ships
    best_judge = best_judge_run(after, winner)
    assert best_judge is not None
    learned = [r for _, r in refits.iterrows() if refit_learned(r)]
    refit_ships = bool(learned) or is_flagged(best_judge["at_chance"])
    shipped = (learned or [r for _, r in refits.iterrows()]) if refit_ships else [best_judge]
    ids = " + ".join(str(r["run_id"]) for r in shipped)
    assert export["source_run"] == ids == summary["shipped"]["run_id"]
    assert export["source_seeds"] == [int(r["seed"]) for r in shipped]
    assert export["n_params"] == len(shipped) * int(
        pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
        .set_index("trial_id")
        .loc[winner, "params"]
    )
    assert export["trained_on_validation"] == refit_ships
    if len(shipped) == 1:  # an average's accuracy is its own: test_export checks it in memory
        assert export["test_accuracy_in_memory"] == pytest.approx(shipped[0]["test_accuracy"])
    assert export["averaged_epochs"] == (window if refit_ships else None)
    assert summary["shipped"].get("averaged_epochs") == (window if refit_ships else None)
    # a refit has no validation score: its flag for "did not learn" is its test score's
    flag = at_chance(float(refit["test_accuracy"]), 8, 0.5)  # 4 cats and 4 dogs
    assert bool(refit["at_chance"]) == flag
    assert (refit["run_id"] in summary["at_chance_runs"]) == flag
    assert summary["sentence"] in out.stdout  # the console's last lines say the same
    report = (run_dir / "report.html").read_text()
    assert summary["verdict"] in report and "confirm-table" in report
    assert "folds of train held out in turn choose the winner" in report
    _check_tensorboard(run_dir, trials, after)

    # --refit all on the finished run: one more refit, on every labelled image, is shipped;
    # its accuracy is said to be unmeasured everywhere, and the verdict does not move
    out = run([*args, "--refit", "all"])
    assert out.returncode == 0, out.stdout + out.stderr
    table = pd.read_csv(run_dir / "confirm.csv", dtype={"trial_id": str})
    assert set(table["run_id"]) - set(after["run_id"]) == {
        f"refit-all-{winner}",
        f"refit-all-{winner}-s2",
    }
    new = table[table["run_id"].str.startswith("refit-all-")].sort_values("seed_index")
    assert (new["epochs"] == refit["epochs"]).all() and new["test_accuracy"].isna().all()
    again = json.loads((run_dir / "summary.json").read_text())
    assert again["sentence"] == summary["sentence"] and again["verdict"] == summary["verdict"]
    export = json.loads((run_dir / "export.json").read_text())
    assert export["passed"]
    learned_all = [str(r["run_id"]) for _, r in new.iterrows() if refit_learned(r)]
    if not learned_all and not is_flagged(best_judge["at_chance"]):
        # none learned its own images and a judge run did: that run ships, as above
        assert export["source_run"] == again["shipped"]["run_id"] == best_judge["run_id"]
        assert not export["trained_on_test"]
        return
    assert again["shipped"]["trained_on"] == ["train", "validation", "test"]
    assert again["shipped"]["scored"].startswith("never: it trained on every labelled image")
    assert again["exported"]["test_accuracy"] is None
    shipped_all = learned_all or list(new["run_id"])
    assert export["source_run"] == " + ".join(shipped_all) and export["trained_on_test"]
    assert "accuracy not measured" in out.stdout and "train + validation + test" in out.stdout
    card = (run_dir / "best_model" / "README.md").read_text()
    assert "**Test accuracy**: not measured" in card


def winner_id(confirm: pd.DataFrame) -> str:
    judged = confirm[(confirm["stage"] == "judge") & (confirm["candidate"] != "baseline")]
    return str(judged["trial_id"].iloc[0])


def _check_tensorboard(run_dir: Path, trials: pd.DataFrame, confirm: pd.DataFrame) -> None:
    """TensorBoard's own reader finds one run per training with one value per epoch (a kill
    and resume included), and one HParams session per trial table row."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from search.tensorboard import run_name

    board = run_dir / "tensorboard"
    history = pd.read_csv(run_dir / "history.csv", dtype={"trial_id": str})
    ids, epochs = trials["trial_id"].astype(str), trials["epochs"]
    expected = {run_name(t): int(e) for t, e in zip(ids, epochs, strict=True)}
    runs = zip(confirm["run_id"], confirm["epochs"], strict=True)
    # the baseline's first judge run is the search's baseline run: logged under its name
    expected |= {r: int(e) for r, e in runs if r != "confirm-baseline-s1"}
    assert {p.name for p in board.iterdir() if p.is_dir()} == set(expected)
    for name, epochs in expected.items():
        splits = ("train",) if name.startswith("refit-") else ("train", "validation")
        for split in splits:
            acc = EventAccumulator(str(board / name / split))
            acc.Reload()
            steps = [e.step for e in acc.Tensors("epoch_accuracy")]
            assert steps == list(range(steps[0], epochs + 1)), (name, split, steps)
    for tid in trials["trial_id"].astype(str):
        acc = EventAccumulator(str(board / run_name(tid)))
        acc.Reload()
        content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        row = trials[trials["trial_id"].astype(str) == tid].iloc[0]
        assert start.hparams["learning_rate"].number_value == pytest.approx(row["learning_rate"])
        assert start.hparams["lrn"].bool_value == bool(row["lrn"])
        assert metadata.SESSION_END_INFO_TAG in content
    val = history[(history["metric"] == "val_accuracy")]
    first = val[val["trial_id"] == str(trials["trial_id"].iloc[-1])]
    acc = EventAccumulator(str(board / run_name(str(trials["trial_id"].iloc[-1])) / "validation"))
    acc.Reload()
    logged = {e.step: float(np.asarray(tensor_value(e))) for e in acc.Tensors("epoch_accuracy")}
    assert logged == pytest.approx(dict(zip(first["epoch"], first["value"], strict=True)))


def tensor_value(event) -> np.ndarray:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)


def test_failed_trial_is_recorded_and_search_goes_on(tiny: dict[str, Path], tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    counter = tmp_path / "builds"
    # Fault injection from the outside: fail the second model build in the workers
    # (warm-up, trial 0000, trial 0001) as an out-of-memory error would.
    (hooks / "sitecustomize.py").write_text(f"""
import os, sys
if os.environ.get("FAIL_BUILD"):
    import importlib.abc, importlib.machinery
    class _Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "models.alexnet":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            loader = spec.loader
            original_exec = loader.exec_module
            def exec_module(module):
                original_exec(module)
                build = module.build_alexnet
                def failing(params):
                    if not sys.argv[0].endswith("process.py"):  # count trial processes only
                        return build(params)
                    p = {str(counter)!r}
                    n = int(open(p).read()) + 1 if os.path.exists(p) else 1
                    open(p, "w").write(str(n))
                    if n in {{int(x) for x in os.environ.get("FAIL_BUILD", "").split(",") if x}}:
                        raise MemoryError("simulated out of memory")
                    return build(params)
                module.build_alexnet = failing
            loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, _Hook())
""")
    env = {
        "PYTHONPATH": f"{hooks}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "FAIL_BUILD": "2",
    }
    run_dir = tmp_path / "run"
    out = run(
        search_args(
            tiny,
            run_dir,
            "--engine",
            "random",
            "--trials",
            "3",
            "--max-epochs",
            "1",
            "--no-baseline",
            "--trials-per-worker",
            "5",
        ),
        env=env,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert len(trials) == 3
    failed = trials[trials["status"] == "failed"]
    assert list(failed.index) == ["0"]  # Keras Tuner pads ids to the width of --trials
    assert "MemoryError: simulated out of memory" in failed["error"].iloc[0]
    assert (trials["status"] == "completed").sum() == 2

    counter.unlink()
    env["FAIL_BUILD"] = ",".join(str(i) for i in range(2, 50))  # every trial after the warm-up
    stop_dir = tmp_path / "run2"
    out = run(
        search_args(
            tiny,
            stop_dir,
            "--engine",
            "random",
            "--trials",
            "5",
            "--max-epochs",
            "1",
            "--no-baseline",
            "--max-failures",
            "2",
        ),
        env=env,
    )
    assert out.returncode != 0
    assert "consecutive" in out.stdout
    assert len(pd.read_csv(stop_dir / "trials.csv")) == 2

    counter.unlink()
    env["FAIL_BUILD"] = "1"  # the warm-up itself: nothing can be trained
    out = run(search_args(tiny, tmp_path / "run3", "--trials", "2", "--no-baseline"), env=env)
    assert out.returncode == 1
    assert "warm-up" in out.stderr and "simulated out of memory" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("flags", "plan_says"),
    [
        (
            ("--strategy", "mirrored", "--cpu-devices", "2"),
            "MirroredStrategy over 2 replica(s); batch 4 per replica = global batch 8",
        ),
        (("--precision", "mixed_float16", "--xla", "on"), "mixed_float16 precision"),
        (("--precision", "mixed_bfloat16"), "mixed_bfloat16 precision"),
    ],
    ids=["mirrored-2-cpus", "float16-xla", "bfloat16"],
)
def test_gpu_code_paths_run_on_the_cpu(
    tiny: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: tuple[str, ...],
    plan_says: str,
) -> None:
    """The paths a GPU takes (mirrored replicas, float16 with loss scaling, XLA) and the AMX
    one (bfloat16), forced on the CPU: a trial trains, and the export serves float32 and
    reloads equal to the trained model."""
    from search.run import main

    run_dir = tmp_path / "run"
    argv = search_args(
        tiny,
        run_dir,
        *flags,
        "--trials",
        "1",
        "--max-epochs",
        "1",
        "--engine",
        "random",
        "--batch-size",
        "4",
    )[3:]
    out = _cli(main, argv, capsys)
    assert out.returncode == 0, out.stdout + out.stderr
    assert plan_says in out.stdout
    if "--precision" in flags:
        assert f"({' '.join(flags[:2])})" in out.stdout  # the plan's reason: forced
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert set(trials["status"]) == {"completed"}
    assert np.isfinite(trials["val_accuracy"]).all()
    export = json.loads((run_dir / "export.json").read_text())
    assert export["equal"]
    import keras

    served = keras.layers.TFSMLayer(str(run_dir / "best_model"), call_endpoint="serve")
    probs = served(np.zeros((2, 67, 67, 3), dtype="uint8"))
    assert str(probs.dtype) == "<dtype: 'float32'>"


def test_time_budget_starts_nothing_that_cannot_finish(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.run import main

    run_dir = tmp_path / "run"
    out = _cli(main, search_args(tiny, run_dir, "--trials", "3", "--time-budget", "1s")[3:], capsys)
    assert "time budget 1s: the baseline needs" in out.stdout
    assert not (run_dir / "trials.csv").exists()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"
    assert (run_dir / "report.html").exists()


def test_refusals(tiny: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / "config.json").write_text(json.dumps({"identity": {"engine": "optuna"}}))
    out = run(search_args(tiny, run_dir, "--trials", "2"))
    assert out.returncode == 2 and "other settings" in out.stderr
    assert "Traceback" not in out.stderr
    other = tmp_path / "locked"
    with locked(other):
        out = run(search_args(tiny, other, "--trials", "2"))
    assert out.returncode == 2 and "in use" in out.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "0"], "--trials must be at least 1, but got 0"),
        (["--image-size", "50"], "image_size must be at least 67"),
        (["--time-budget", "soon"], "--time-budget must look like"),
        (["--data-dir", "/nonexistent/data"], "python -m data_pipeline.download"),
        (["--image-size", "100000"], "--image-size must be at most 1024"),
        (["--width", "50"], "--width must be at most 4"),
        (["--confirm", "1"], "--confirm 1 cannot tell"),
        (["--confirm", "-2"], "--confirm must be a number of seeds"),
        (["--confirm-top", "0"], "--confirm-top must be from 1 to 10"),
        (
            ["--refit-seeds", "0"],
            "--refit-seeds must be a number of refits from 1 to 10, but got 0",
        ),
        (["--refit-seeds", "two"], "--refit-seeds: invalid int value: 'two'"),
        (["--tta", "vertical"], "--tta: invalid choice: 'vertical'"),
        (["--val-fraction", "0.6", "--test-fraction", "0.5"], "must leave images to train on"),
        (["--test-fraction", "1.5"], "--test-fraction must be in [0, 1)"),
        (["--space", "/"], "is not a file"),
        (["--seed", "-1"], "--seed must be from 0"),
        (["--cpu-devices", "2"], "add --strategy mirrored"),
        (["--strategy", "mirrored", "--cpu-devices", "0"], "--cpu-devices must be from 1 to 16"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    tiny: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    out = run([*search_args(tiny, tmp_path / "run"), *extra])
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_dry_run_prints_the_plan(tiny: dict[str, Path], tmp_path: Path) -> None:
    # the README's first command on a machine without a GPU: it plans the cpu preset's sizes
    args = search_args(tiny, tmp_path / "run", "--dry-run")
    for flag in ("--image-size", "--width", "--space"):
        del args[args.index(flag) : args.index(flag) + 2]
    out = run(args, env={"CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr
    assert "one iteration = 30 trials" in out.stdout
    assert "12 x 3 ep, 4 x 7 ep, 2 x 20 ep" in out.stdout
    assert "ETA" in out.stdout
    assert not (tmp_path / "run").exists()
    assert "Traceback" not in out.stderr and "oneDNN" not in out.stderr  # a quiet start-up
    assert "preset cpu (auto: no GPU visible; --preset blog for the blog's 227px" in out.stdout
    assert "images: 128px" in out.stdout
    assert "(58,289,538 at the blog's 227px)" in out.stdout
    assert "train, 4 validation (chooses), 8 test (judges" in out.stdout  # the three splits
    assert "confirmation: the best configuration and the baseline, 3 new seeds" not in out.stdout
    # with the default evidence phase: its runs counted, the two refits named
    out = run([*args, "--confirm", "3"], env={"CUDA_VISIBLE_DEVICES": ""})
    plan = " ".join(out.stdout.split())  # one line, however the console wrapped
    assert "refitted on train + validation 2 times (their probabilities averaged)" in plan
    assert "(16 of 16 runs to go)" in plan  # 3 x 3 selection, 3 + 2 judge, 2 refits


def test_the_plan_names_an_unused_gpu_and_the_preset(
    tiny: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from search.run import main

    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1234)'\n")
    smi.chmod(0o755)
    args = search_args(tiny, tmp_path / "run", "--dry-run", "--preset", "cpu")
    for flag in ("--image-size", "--width"):  # let the preset choose these
        i = args.index(flag)
        del args[i : i + 2]
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    out = _cli(main, args[3:], capsys)
    assert out.returncode == 0, out.stderr
    assert "nvidia-smi lists 1 GPU(s) but TensorFlow sees none" in out.stdout
    assert "tensorflow[and-cuda]" in out.stdout
    assert "preset cpu: --subset 2000 --image-size 128 --width 0.5" in out.stdout
    assert "images: 128px" in out.stdout and "width x0.5" in out.stdout


def test_a_preset_fills_only_what_the_command_line_left_unset() -> None:
    from search.options import apply_preset

    unset = {"subset": None, "image_size": None, "width": None}
    assert apply_preset(None, unset) == {"subset": None, "image_size": 227, "width": 1.0}
    assert apply_preset("cpu", unset) == {"subset": 2000, "image_size": 128, "width": 0.5}
    mine = {"subset": None, "image_size": 96, "width": None}
    assert apply_preset("cpu", mine) == {"subset": 2000, "image_size": 96, "width": 0.5}


def test_a_time_budget_that_ends_mid_search_still_exports_and_reports(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget is made to run out after the first search trial (deterministically: the
    budget's verdicts are scripted), in this process; the finishing steps still run."""
    from rich.console import Console

    from search.loop import Budget
    from search.options import SearchOptions
    from search.session import Search

    verdicts = iter([True, True])  # the baseline, the first trial; then out of time
    real_fits = Budget.fits

    def scripted(self: Budget, need: float, what: str, *, after: str = "") -> bool:
        if next(verdicts, False):
            return True
        return real_fits(Budget(0.0, self.say), need, what, after=after)

    monkeypatch.setattr(Budget, "fits", scripted)
    run_dir = tmp_path / "run"
    opts = SearchOptions(
        trials=4,
        max_epochs=2,
        data_dir=tiny["data"],
        image_size=67,
        width=0.125,
        batch_size=8,
        space=tiny["space"],
        cache_dir=tiny["cache"],
        run_dir=run_dir,
        confirm=0,
        engine="random",
    )
    console = Console(record=True, width=200)
    assert Search(opts, [], console).run() == 0
    out = console.export_text()
    assert "stopping after 1 of 4 trials" in out
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert list(trials["trial_id"]) == ["baseline", trials["trial_id"].iloc[1]] and len(trials) == 2
    export = json.loads((run_dir / "export.json").read_text())
    assert export["equal"] and export["source_trial"] == trials["trial_id"].iloc[1]
    assert json.loads((run_dir / "summary.json").read_text())["confirmed"] is False
    assert (run_dir / "report.html").exists()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"


def test_an_80_column_terminal_gets_no_wider_line_and_the_winner_named(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    """In a terminal 80 columns wide every line the search prints (plan, bars, trial lines,
    verdict) fits, and its last lines name the winner's parameters beside the blog's."""
    import fcntl
    import pty
    import re
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    args = search_args(
        tiny,
        tmp_path / "run",
        "--trials",
        "2",
        "--max-epochs",
        "2",
        "--confirm",
        "2",
        "--confirm-top",
        "1",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the search has ended
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=600) == 0
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    lines = [seg for line in text.split("\n") for seg in line.split("\r")]
    wide = [line for line in lines if len(line.rstrip()) > 80]
    assert not wide, wide[:3]
    tail = " ".join(line.strip() for line in lines if line.strip())[-1500:]
    assert re.search(r"winner: trial \S+: dropout [0-9.]+ \((blog 0\.2500|as blog)\)", tail)
    assert re.search(r"learning_rate \S+ \((blog 1\.00e-05|as blog)\)", tail)
    # one session: the console's time is the report's wall time (status.json), within a second
    wall = json.loads((tmp_path / "run" / "status.json").read_text())["wall_seconds"]
    took = re.search(r"done in (?:(\d+)m)?(\d+)s;", tail)
    assert took, tail
    assert abs(60 * int(took.group(1) or 0) + int(took.group(2)) - wall) <= 1.0, (took, wall)
    assert "with earlier sessions" not in tail


def test_a_resume_on_a_changed_data_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Adding photos to a flat folder would re-split it: images a trial trained on would
    become test images. The rerun, and a later export, refuse with what changed and the fix.
    The same bytes under new modification times are the same data: the run resumes."""
    from search import export as export_cli
    from search.run import main
    from tests.conftest import make_flat_layout, write_image

    data = make_flat_layout(tmp_path / "flat", per_class=10)
    tiny = {"data": data, "space": tmp_path / "space.toml", "cache": tmp_path / "cache"}
    tiny["space"].write_text(TINY_SPACE)
    run_dir = tmp_path / "run"
    args = search_args(tiny, run_dir, "--trials", "1", "--max-epochs", "1", "--no-baseline")[3:]
    assert _cli(main, args, capsys).returncode == 0
    manifest = json.loads((run_dir / "data_manifest.json").read_text())
    assert len(manifest) == 20 and {v[0] for v in manifest.values()} == {
        "train",
        "validation",
        "test",
    }
    # the same bytes with new modification times (a copy, a restore): the run is the same one
    for name in manifest:
        os.utime(data / name, ns=(10**18, 10**18))
    assert _cli(main, args, capsys).returncode == 0
    refreshed = json.loads((run_dir / "data_manifest.json").read_text())
    assert {v[2] for v in refreshed.values()} == {10**18}
    # ... but not other bytes of the same size
    photo = data / "cat.0.jpg"
    original = photo.read_bytes()
    photo.write_bytes(original[:-3] + bytes(b ^ 0xFF for b in original[-3:]))
    changed = _cli(main, args, capsys)
    assert changed.returncode == 2 and "1 changed" in changed.stderr
    photo.write_bytes(original)
    os.utime(photo, ns=(10**18, 10**18))
    for i in range(10, 13):
        write_image(data / f"cat.{i}.jpg", seed=1000 + i)
    (data / "dog.3.jpg").unlink()
    again = _cli(
        main,
        search_args(tiny, run_dir, "--trials", "2", "--max-epochs", "1", "--no-baseline")[3:],
        capsys,
    )
    assert again.returncode == 2, again.stdout + again.stderr
    assert "the data folder changed" in again.stderr and "3 added, 1 removed" in again.stderr
    assert "another --run-dir" in again.stderr
    assert len(pd.read_csv(run_dir / "trials.csv")) == 1  # nothing ran on the new split
    out = _cli(export_cli.main, [str(run_dir)], capsys)
    assert out.returncode == 2 and "the data folder changed" in out.stderr


def test_select_smallest_judges_the_smaller_candidate_on_the_same_seeds(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = search_args(tiny, run_dir, "--trials", "3", "--max-epochs", "1", "--engine", "random")
    args += ["--confirm", "2", "--confirm-top", "1", "--select", "smallest", "--margin", "50"]
    out = run(args)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    smaller, export = summary["smaller"], json.loads((run_dir / "export.json").read_text())
    table = pd.read_csv(run_dir / "confirm.csv", dtype={"trial_id": str})
    judged = table[table["stage"] == "judge"]
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    size = dict(zip(trials["trial_id"], trials["params"], strict=True))
    if smaller["trial_id"] is None:  # the winner is the smallest of the front
        assert "smallest" not in set(judged["candidate"])
        assert export["source_trial"] == summary["winner"]["trial_id"]
    else:
        mine = judged[judged["candidate"] == "smallest"]
        best = judged[judged["trial_id"] == smaller["winner_trial_id"]]
        assert set(mine["trial_id"]) == {smaller["trial_id"]}
        assert sorted(mine["seed"]) == sorted(best["seed"]) and len(mine) == 2
        assert size[smaller["trial_id"]] < size[smaller["winner_trial_id"]]
        assert smaller["verdict"] in VERDICTS
        shipped = smaller["trial_id"] if smaller["ships"] else smaller["winner_trial_id"]
        assert export["source_trial"] == shipped == summary["winner"]["trial_id"]
        # --select smallest refits once by default: a small model is what it asks for
        assert table[table["stage"] == "refit"]["trial_id"].tolist() == [shipped]
    assert summary["verdict"] in VERDICTS
    card = json.loads((run_dir / "best_model" / "model_card.json").read_text())
    assert card["size"]["parameters"] == size[export["source_trial"]]
    assert card["latency_ms_per_image"]["batch_1"] > 0 < card["latency_ms_per_image"]["batch_32"]
    assert "Traded for size" in (run_dir / "best_model" / "README.md").read_text()
    # every front configuration's SavedModel timed, in summary.json and the report's table
    front = {r["trial_id"]: r for r in summary["pareto"]}
    assert set(export["front_latency"]) == set(front)
    for trial_id, ms in export["front_latency"].items():
        assert ms["batch_1"] > 0 < ms["batch_32"]
        assert front[trial_id]["latency_ms_per_image"] == ms
    html = (run_dir / "report.html").read_text()
    assert ("front-table" in html) == (len(front) >= 2)
    again = run(args)  # nothing owed: the smaller candidate's runs are counted as planned
    assert again.returncode == 0 and "this search is finished" in again.stdout


def test_a_multi_objective_needs_optuna_and_says_why(
    tiny: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from search.run import main

    args = search_args(tiny, tmp_path / "run", "--objective", "accuracy,params")
    out = _cli(main, args[3:], capsys)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--objective accuracy,params needs --engine optuna" in out.stderr
    assert "would sum the two objectives" in out.stderr and "--select smallest" in out.stderr
    assert not (tmp_path / "run").exists()
