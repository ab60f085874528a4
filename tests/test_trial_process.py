"""The trial process's behaviour, in this process (no subprocess start-up): a NaN loss fails the
trial, a promoted trial starts from its parent's weights, a missing parent fails clearly, and
the client replaces its process after ``trials_per_process`` trainings."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.pipeline import prepare
from models.alexnet import AlexNetParams
from search import rundir
from search.options import SearchOptions
from search.rundir import RunConfig
from search.space import DEFAULT_SPACE
from search.trial import protocol
from search.trial.client import TrialProcessClient
from search.trial.process import IN_EPOCH_END, TrialProcess, compile_for_training
from tests.conftest import make_blog_layout

PARAMS = AlexNetParams(image_size=67, width=0.125, dense_units=8, learning_rate=1e-3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> protocol.Setup:
    root = tmp_path_factory.mktemp("trialproc")
    opts = SearchOptions(
        data_dir=make_blog_layout(root / "data", train=6, test=2),
        image_size=67,
        width=0.125,
        batch_size=4,
        cache_dir=root / "cache",
        precision="float32",
        xla="off",
    )
    data = prepare(opts.data_config())
    config = RunConfig(
        identity=opts.identity(),
        options=opts.to_dict(),
        space=DEFAULT_SPACE,
        data_config=opts.data_config(),
        classes=tuple(data.classes),
        data={"counts": data.counts()},
        versions={},
        command="",
        created_at="",
    )
    run_dir = root / "run"
    run_dir.mkdir()
    return protocol.Setup(run_dir=str(run_dir), config=config)


def _train(process: TrialProcess, out: io.StringIO, **kw) -> tuple[protocol.Done, list]:
    run_dir = Path(process.run_dir)
    trial_id = kw.pop("trial_id", "t")
    msg = protocol.Train(
        trial_id=trial_id,
        params=kw.pop("params", PARAMS),
        epochs=kw.pop("epochs", 1),
        checkpoint=str(rundir.checkpoint_path(run_dir, trial_id)),
        stop_file=str(run_dir / "trials" / trial_id / "STOP"),
        seed=kw.pop("seed", 1),
        **kw,
    )
    start = out.tell()
    process.trial(msg)
    out.seek(start)
    events = [protocol.decode(line) for line in out.read().splitlines()]
    done = events[-1]
    assert isinstance(done, protocol.Done)
    return done, events[:-1]


def test_messages_round_trip_and_a_bad_line_is_a_protocol_error(setup: protocol.Setup) -> None:
    train = protocol.Train("0003", PARAMS, 7, "c.npz", "STOP", 5, 3, "p.npz")
    for msg in (setup, train, protocol.failed("x", "boom"), protocol.Exit()):
        assert protocol.decode(protocol.encode(msg)) == msg
    with pytest.raises(protocol.ProtocolError, match="not a message"):
        protocol.decode('{"kind": "Train", "trial_id": "x"}')  # fields missing
    with pytest.raises(protocol.ProtocolError):
        protocol.decode("Traceback (most recent call last):")


def test_a_nan_loss_fails_the_trial(setup: protocol.Setup) -> None:
    out = io.StringIO()
    process = TrialProcess(setup, out)
    # a step this large overflows the weights at once: the next loss is not finite
    exploding = AlexNetParams(image_size=67, width=0.125, dense_units=8, learning_rate=1e30)
    done, _ = _train(process, out, trial_id="nan", params=exploding, epochs=3)
    assert done.status == "failed" and "NaN/inf loss" in (done.error or "")
    assert done.val_accuracy is None


def test_a_training_reports_where_its_time_went(setup: protocol.Setup) -> None:
    out = io.StringIO()
    process = TrialProcess(setup, out)
    done, epochs = _train(process, out, trial_id="timed", epochs=3)
    assert done.status == "completed" and len(epochs) == 3
    costs = done.costs
    for name in (
        "build",
        "compile",
        "tracing",
        "train",
        "validation",
        "checkpoint",
        "checkpoint_wait",
        "callbacks",
        "fit_other",
        "teardown",
    ):
        assert costs[name] >= 0.0, name
    assert costs["train"] > 0 and costs["validation"] > 0
    # the epochs' own work, their tracing and the hooks fit inside fit's time ...
    inside_fit = ("tracing", "train", "validation", "callbacks", "fit_other", *IN_EPOCH_END)
    assert sum(costs.get(k, 0.0) for k in inside_fit) == pytest.approx(done.fit_seconds, abs=0.05)
    # ... and every component inside the training's time
    assert sum(costs.values()) <= done.seconds + 0.05
    # the checkpoint, written off the training thread, is complete when Done is reported
    with np.load(rundir.checkpoint_path(Path(setup.run_dir), "timed")) as saved:
        assert len(saved.files) > 0


def test_a_refit_ships_the_mean_of_its_last_epochs_weights(setup: protocol.Setup) -> None:
    """Trained alike (same seed, same data order), a refit of 2 epochs ends on epoch 2's
    weights and one of 3 on epoch 3's; asked to average its last 2, a 3-epoch refit ships
    their mean, scores test with it, and says how those weights score on the validation
    images they trained on."""
    out = io.StringIO()
    process = TrialProcess(setup, out)
    run_dir = Path(setup.run_dir)

    def refit(name: str, epochs: int, window: int) -> tuple[protocol.Done, list[np.ndarray]]:
        done, _ = _train(
            process,
            out,
            trial_id=name,
            epochs=epochs,
            refit=True,
            shuffle_seed=1,
            average_last=window,
            test_predictions=str(run_dir / f"{name}.npy"),
        )
        assert done.status == "completed", done.error
        with np.load(rundir.checkpoint_path(run_dir, name)) as saved:
            return done, [saved[f"arr_{i}"] for i in range(len(saved.files))]

    _, second = refit("two", 2, 0)
    _, third = refit("three", 3, 0)
    done, mean = refit("mean", 3, 2)
    assert not all(np.allclose(a, b) for a, b in zip(second, third, strict=True))
    for got, a, b in zip(mean, second, third, strict=True):
        np.testing.assert_allclose(got, (a + b) / 2, rtol=1e-5, atol=1e-7)
    assert done.test_accuracy is not None and (run_dir / "mean.npy").exists()
    # whether it learned is read off the weights it ships, on the images they trained on
    from models.alexnet import build_alexnet

    shipped = build_alexnet(PARAMS)
    shipped.set_weights(mean)
    right = []
    for split in ("train", "validation"):
        probs = shipped.predict(process.data.evaluation_dataset(split, 4), verbose=0)
        right += list(probs.argmax(axis=1) == process.data.cached.split(split)[1])
    sizes = process.data.split_size("train") + process.data.split_size("validation")
    assert done.fit_n == len(right) == sizes
    assert done.fit_accuracy == pytest.approx(float(np.mean(right)))


def test_a_refit_all_trains_on_the_test_images_too(
    setup: protocol.Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--refit all``: the refit's batches come from train + validation + test; a trainval
    refit's from train + validation only."""
    out = io.StringIO()
    process = TrialProcess(setup, out)
    asked: list[tuple[str, ...]] = []
    kind = type(process.data)
    real = kind.training_dataset

    def spy(self, splits: tuple[str, ...], *args, **kw):
        asked.append(tuple(splits))
        return real(self, splits, *args, **kw)

    monkeypatch.setattr(kind, "training_dataset", spy)
    for name, on_test in (("tv", False), ("all", True)):
        done, _ = _train(process, out, trial_id=name, refit=True, refit_test=on_test)
        assert done.status == "completed", done.error
    assert asked == [("train", "validation"), ("train", "validation", "test")]


def test_a_trials_training_step_is_traced_once() -> None:
    import keras

    from models.alexnet import build_alexnet

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 67, 67, 3), dtype=np.uint8)
    y = rng.integers(0, 2, 8).astype(np.int32)
    keras.utils.set_random_seed(1)
    model = build_alexnet(PARAMS)
    compile_for_training(model, PARAMS, jit_compile=False)
    traced = 0
    step = model.train_step

    def counting_step(data):  # runs in Python once per tracing, never per batch
        nonlocal traced
        traced += 1
        return step(data)

    model.train_step = counting_step
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    keras.backend.clear_session()
    assert traced == 1  # twice if the first step had to create the optimizer's variables


def test_a_promoted_trial_starts_from_its_parents_weights(
    setup: protocol.Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models import checkpoint

    out = io.StringIO()
    process = TrialProcess(setup, out)
    parent, epochs = _train(process, out, trial_id="parent", epochs=1)
    assert parent.status == "completed" and len(epochs) == 1
    parent_ckpt = rundir.checkpoint_path(Path(setup.run_dir), "parent")
    with np.load(parent_ckpt) as saved:
        parent_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    loaded: list[list[np.ndarray]] = []
    real_load = checkpoint.load_weights

    def spy(model, path):
        real_load(model, path)
        if Path(path) == parent_ckpt:
            loaded.append([np.asarray(w) for w in model.get_weights()])

    monkeypatch.setattr(checkpoint, "load_weights", spy)
    child, child_epochs = _train(
        process, out, trial_id="child", epochs=2, initial_epoch=1, warm_start=str(parent_ckpt)
    )
    assert child.status == "completed"
    assert [e.epoch for e in child_epochs] == [2]  # it continues, epoch 2 of 2
    assert len(loaded) == 1  # the model it trained began as the parent's
    for a, b in zip(loaded[0], parent_weights, strict=True):
        np.testing.assert_array_equal(a, b)


class _Recorder:
    """A stand-in for the trial process client: it must not be asked to train."""

    def run_trial(self, msg, on_epoch):  # pragma: no cover - a failure if reached
        raise AssertionError(f"trained {msg.trial_id} although its parent's weights are gone")


def test_a_missing_parent_checkpoint_fails_the_trial_clearly(tmp_path: Path) -> None:
    from rich.progress import Progress

    from search.engines import TrialSpec
    from search.plan import Estimator
    from search.results import load_trials
    from search.trial.runner import TrialRunner

    bars = Progress(disable=True)
    runner = TrialRunner(
        tmp_path,
        SearchOptions(),
        lambda values: PARAMS,
        _Recorder(),  # type: ignore[arg-type]
        rundir.Status(tmp_path, 2),
        bars,
        bars.add_task("all", total=10, note=""),
        Estimator(1.0),
        n_validation=4,
    )
    spec = TrialSpec("0005", {}, 7, initial_epoch=3, parent_id="0001")
    outcome = runner.run(spec, engine=None)
    assert outcome.status == "failed"
    assert "checkpoint" in (outcome.error or "") and "0001" in (outcome.error or "")
    row = load_trials(tmp_path).iloc[0]
    assert row["status"] == "failed" and row["parent_id"] == "0001"


def fake_process(start_s: float = 0.0, train_s: float = 0.0) -> tuple[str, ...]:
    """The command of a stand-in trial process that takes ``start_s`` to start and ``train_s``
    per training, answering each ``Train`` with a ``Done`` that carries its pid in ``params``."""
    script = f"""
import os, sys, time
from search.trial import protocol
sys.stdin.readline()
time.sleep({start_s})
print(protocol.encode(protocol.Ready(os.getpid(), "float32", False, 1, 4, 0)), end="", flush=True)
for line in sys.stdin:
    msg = protocol.decode(line)
    if isinstance(msg, protocol.Exit):
        break
    time.sleep({train_s})
    print(protocol.encode(protocol.Done(msg.trial_id, "completed", val_accuracy=0.5,
                                        best_epoch=1, epochs=1, params=os.getpid())),
          end="", flush=True)
"""
    return (sys.executable, "-c", script)


def test_the_client_replaces_its_process_every_n_trainings(
    setup: protocol.Setup, tmp_path: Path
) -> None:
    client = TrialProcessClient(
        tmp_path,
        setup.config,
        tmp_path / "log",
        trials_per_process=2,
        command=fake_process(),
    )
    try:
        pids = []
        for i in range(5):
            msg = protocol.Train(f"{i}", PARAMS, 1, "c.npz", "STOP", 1)
            pids.append(client.run_trial(msg, lambda e: None).params)
    finally:
        client.close()
    assert client.started == 3
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


@pytest.mark.parametrize("prestart", [True, False])
def test_the_next_process_starts_while_the_last_trial_of_the_current_one_trains(
    setup: protocol.Setup, tmp_path: Path, prestart: bool
) -> None:
    client = TrialProcessClient(
        tmp_path,
        setup.config,
        tmp_path / "log",
        trials_per_process=1,
        # seconds to start (imports, data mapping); a training long enough for the next
        # process to start, also on a busy machine
        command=fake_process(start_s=0.6, train_s=2.5),
        prestart=prestart,
    )
    try:
        done = [
            client.run_trial(protocol.Train(f"{i}", PARAMS, 1, "c.npz", "STOP", 1), lambda e: 0)
            for i in range(2)
        ]
    finally:
        client.close()
    assert done[0].params != done[1].params  # a process per trial
    first, second = (d.costs["process_start"] for d in done)
    assert first >= 0.6  # nothing was started ahead of the first
    if prestart:  # started during the previous trial: ready when needed
        assert second < 0.4
    else:
        assert second >= 0.6
    assert client.started == (3 if prestart else 2)  # the one started ahead of a third trial
    assert "chief" in done[1].costs and "exchange" in done[1].costs


def test_the_stop_file_prunes_the_trial_after_its_epoch(setup: protocol.Setup) -> None:
    out = io.StringIO()
    process = TrialProcess(setup, out)
    stop = Path(setup.run_dir) / "trials" / "pruned" / "STOP"
    stop.parent.mkdir(parents=True, exist_ok=True)
    stop.touch()  # as the search does when the engine says prune
    done, epochs = _train(process, out, trial_id="pruned", epochs=3)
    assert done.status == "pruned" and done.epochs == 1 and len(epochs) == 1
    assert done.val_accuracy is not None  # a pruned trial keeps its score


def test_a_run_validated_from_an_epoch_is_scored_on_those_epochs_only(
    setup: protocol.Setup,
) -> None:
    """A selection run is validated on its last epochs only: the epochs before carry no
    validation score, and its best epoch is one of those it was scored on; the same run
    validated throughout trains identically (validation draws nothing at random)."""
    out = io.StringIO()
    process = TrialProcess(setup, out)
    done, epochs = _train(process, out, trial_id="tail", epochs=4, validate_from=3, shuffle_seed=1)
    assert done.status == "completed" and [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert ["val_accuracy" in e.metrics for e in epochs] == [False, False, True, True]
    assert done.best_epoch in (3, 4) and done.val_accuracy is not None
    assert done.costs["validation"] > 0
    _, every = _train(process, out, trial_id="every", epochs=4, shuffle_seed=1)
    assert all("val_accuracy" in e.metrics for e in every)
    assert [e.metrics["loss"] for e in every] == pytest.approx([e.metrics["loss"] for e in epochs])
    assert [e.metrics["val_accuracy"] for e in every[2:]] == [
        e.metrics["val_accuracy"] for e in epochs[2:]
    ]


@dataclass
class Bfloat16Process:
    process: TrialProcess
    out: io.StringIO
    built: list[str]  # the dtype policy of every model the process built, in order


@pytest.fixture
def bfloat16_process(
    setup: protocol.Setup, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bfloat16Process]:
    """A trial process told to train in mixed bfloat16, watched as it builds models."""
    import keras

    import models.alexnet as alexnet

    config = replace(setup.config, options={**setup.config.options, "precision": "mixed_bfloat16"})
    built: list[str] = []
    real_build = alexnet.build_alexnet

    def spy(params: AlexNetParams):
        model = real_build(params)
        built.append(model.dtype_policy.name)
        return model

    monkeypatch.setattr(alexnet, "build_alexnet", spy)
    out = io.StringIO()
    try:
        yield Bfloat16Process(TrialProcess(replace(setup, config=config), out), out, built)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # this module's other tests'


def test_every_training_of_a_process_keeps_its_precision(
    bfloat16_process: Bfloat16Process,
) -> None:
    """Keras's clear_session resets the global dtype policy: the warm-up and every later
    training of one process must still build their models under the policy it chose."""
    process, out = bfloat16_process.process, bfloat16_process.out
    process.warmup(protocol.Warmup(params=PARAMS))
    for name in ("first", "second"):
        done, _ = _train(process, out, trial_id=name)
        assert done.status == "completed", done.error
    assert bfloat16_process.built == ["mixed_bfloat16"] * 3


def test_test_scores_are_the_float32_model_the_export_serves(
    bfloat16_process: Bfloat16Process,
) -> None:
    """A bfloat16 training is scored on test by a float32 twin of its weights (what the export
    serves), so the refit's test score is the shipped model's own; the process's policy stays
    bfloat16 for its next training."""
    import keras

    from models.alexnet import build_alexnet
    from models.checkpoint import load_weights

    process, out, built = bfloat16_process.process, bfloat16_process.out, bfloat16_process.built
    run_dir = Path(process.run_dir)
    preds = run_dir / "served.npy"
    done, _ = _train(process, out, trial_id="served", test_predictions=str(preds))
    assert done.status == "completed", done.error
    assert built == ["mixed_bfloat16", "float32"]
    _train(process, out, trial_id="next")
    assert built[2:] == ["mixed_bfloat16"]
    keras.mixed_precision.set_global_policy("float32")
    served = build_alexnet(PARAMS)
    load_weights(served, rundir.checkpoint_path(run_dir, "served"))
    x, y = process.data.arrays("test")
    expected = np.argmax(served.predict_on_batch(x), axis=1)
    np.testing.assert_array_equal(np.load(preds), expected)
    assert done.test_accuracy == pytest.approx(float(np.mean(expected == y)))
