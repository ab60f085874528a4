"""The search loop with a fake engine and a fake trainer: milliseconds, no TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from models.alexnet import AlexNetParams, multiply_adds
from search import results as res
from search.engines import WAIT, SearchEngine, TrialOutcome, TrialSpec
from search.loop import Budget, SearchLoop, Stop, recorded_outcomes
from search.space import DEFAULT_SPACE as DEFAULT_SPACE_FOR_TEST
from search.space import baseline_values


class FakeEngine(SearchEngine):
    """Hands out ``t0``, ``t1``, ... (or scripted answers) and remembers what it was told."""

    name = "fake"

    def __init__(self, script: list[TrialSpec | None] | None = None, n: int = 10) -> None:
        self.script = list(script) if script is not None else [_spec(i) for i in range(n)]
        self.told: list[tuple[str, str]] = []

    def next_trial(self) -> TrialSpec | None:
        return self.script.pop(0) if self.script else None

    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        self.told.append((spec.trial_id, outcome.status))

    def schedule(self, n_trials: int) -> list[TrialSpec]:
        return [_spec(i) for i in range(n_trials)]


def _spec(i: int, epochs: int = 2) -> TrialSpec:
    return TrialSpec(f"t{i}", baseline_values(), epochs)


def _row(
    trial_id: str,
    status: str,
    score: float | None,
    error: str | None = None,
    *,
    dropout: float | None = None,
):
    values = baseline_values() if dropout is None else {**baseline_values(), "dropout": dropout}
    return res.TrialRow(
        trial_id=trial_id,
        status=status,
        values=values,
        val_accuracy=score,
        best_epoch=1 if score is not None else None,
        epochs=2,
        seconds=1.0,
        params=10,
        error=error,
        fit_seconds=1.0,
        peak_rss_mb=None,
        bracket=None,
        round=None,
        parent_id=None,
        initial_epoch=0,
        target_epochs=2,
        ended_at="2026-11-26T00:00:00+00:00",
    )


@dataclass
class FakeRunner:
    """Records a row for each trial as the real runner does (row first, then the engine)."""

    run_dir: Path
    fail: set[str] = field(default_factory=set)
    clock: list[float] = field(default_factory=lambda: [0.0])
    seconds_per_trial: float = 10.0
    trained: list[str] = field(default_factory=list)

    def run(self, spec: TrialSpec, engine: SearchEngine | None) -> TrialOutcome:
        self.trained.append(spec.trial_id)
        self.clock[0] += self.seconds_per_trial
        failed = spec.trial_id in self.fail
        row = _row(
            spec.trial_id,
            "failed" if failed else "completed",
            None if failed else 0.5 + 0.01 * len(self.trained),
            error="NaN/inf loss at epoch 1, batch 0" if failed else None,
        )
        history = [] if failed else [(1, {"val_accuracy": row.val_accuracy or 0.0})]
        res.record_trial(self.run_dir, row, history)
        outcome = TrialOutcome(
            row.status, row.val_accuracy, [(1, row.val_accuracy)] if not failed else [], row.error
        )
        if engine is not None:
            engine.finish(spec, outcome)
        return outcome


def _loop(tmp_path: Path, engine: SearchEngine, runner: FakeRunner, **kw) -> SearchLoop:
    said: list[str] = kw.pop("said", [])
    budget = Budget(kw.pop("budget", None), said.append, clock=lambda: runner.clock[0])
    return SearchLoop(
        run_dir=tmp_path,
        engine=engine,
        runner=runner,
        budget=budget,
        say=said.append,
        trials=kw.pop("trials", 4),
        max_failures=kw.pop("max_failures", 3),
        trial_seconds=lambda epochs: 10.0 * epochs / 2,
        sleep=lambda s: runner.clock.__setitem__(0, runner.clock[0] + s),
        **kw,
    )


def test_runs_exactly_the_requested_trials_and_tells_the_engine(tmp_path: Path) -> None:
    engine, runner = FakeEngine(), FakeRunner(tmp_path)
    assert _loop(tmp_path, engine, runner).run() is Stop.DONE
    assert runner.trained == ["t0", "t1", "t2", "t3"]
    assert engine.told == [(f"t{i}", "completed") for i in range(4)]
    assert len(res.load_trials(tmp_path)) == 4


def test_a_recorded_trial_is_replayed_to_the_engine_not_trained_again(tmp_path: Path) -> None:
    # killed after t0's row was written but before the engine heard of it: the engine hands
    # t0 out again when the search restarts
    res.record_trial(tmp_path, _row("t0", "completed", 0.7), [(1, {"val_accuracy": 0.7})])
    engine, runner = FakeEngine(), FakeRunner(tmp_path)
    assert _loop(tmp_path, engine, runner, trials=3).run() is Stop.DONE
    assert runner.trained == ["t1", "t2"]
    assert engine.told[0] == ("t0", "completed")
    assert recorded_outcomes(tmp_path)["t0"].per_epoch == [(1, 0.7)]


def test_consecutive_failures_stop_the_search_with_the_last_error(tmp_path: Path) -> None:
    engine, runner = FakeEngine(), FakeRunner(tmp_path, fail={"t1", "t2", "t3"})
    loop = _loop(tmp_path, engine, runner, trials=8, max_failures=3)
    assert loop.run() is Stop.FAILURES
    assert runner.trained == ["t0", "t1", "t2", "t3"]
    assert "NaN" in (loop.last_error or "")


def test_failures_that_are_not_consecutive_do_not_stop_it(tmp_path: Path) -> None:
    engine, runner = FakeEngine(), FakeRunner(tmp_path, fail={"t0", "t2", "t4"})
    assert _loop(tmp_path, engine, runner, trials=6, max_failures=2).run() is Stop.DONE


def test_the_time_budget_stops_before_a_trial_that_cannot_finish(tmp_path: Path) -> None:
    said: list[str] = []
    engine, runner = FakeEngine(), FakeRunner(tmp_path)
    loop = _loop(tmp_path, engine, runner, trials=5, budget=25.0, said=said)
    assert loop.run() is Stop.BUDGET
    assert runner.trained == ["t0", "t1"]  # a third would end at 30 s > 25 s
    assert any("stopping after 2 of 5 trials" in line for line in said)


def test_the_budget_keeps_time_for_what_follows(tmp_path: Path) -> None:
    engine, runner = FakeEngine(), FakeRunner(tmp_path)
    loop = _loop(tmp_path, engine, runner, trials=5, budget=45.0, reserve_seconds=lambda: 20.0)
    assert loop.run() is Stop.BUDGET
    assert runner.trained == ["t0", "t1"]  # 20 s trained + 10 next + 20 reserved > 45


def _arch(dense: int, lrn: bool = False) -> AlexNetParams:
    return AlexNetParams(dense_units=dense, lrn=lrn, image_size=128, width=0.5)


def test_the_epoch_estimate_prices_each_configuration() -> None:
    """The warm-up times the baseline, the slowest model of the default space: an unknown
    trial is not priced like it, a measured configuration costs what it measured, and one not
    measured lies on the line through the measured widths."""
    from search.plan import Estimator

    base, small, mid = _arch(4096, True), _arch(512), _arch(2048)
    est = Estimator(2.5, warm=base, typical=(base, small))
    assert est.epoch_s(base) == 2.5  # the warm-up's, until an epoch is measured
    # before anything is measured: the configuration's multiply-adds, at the warm-up's rate
    assert est.epoch_s(small) == pytest.approx(
        2.5 * sum(multiply_adds(small)) / sum(multiply_adds(base))
    )
    assert est.epoch_s() == pytest.approx((2.5 + est.epoch_s(small)) / 2)
    assert est.overhead_s == 3.0 and est.trial_s(10, base) == pytest.approx(28.0)
    for _ in range(19):
        est.add(replace(base, learning_rate=3e-4, dropout=0.1), 2.5)  # the same architecture
    for seconds in (1.6, 1.7):
        est.add(small, seconds)
    assert est.epoch_s(small) == pytest.approx(1.65) and est.epoch_s(base) == pytest.approx(2.5)
    x0, x1, x = (multiply_adds(p)[1] for p in (small, base, mid))
    line = 1.65 + (2.5 - 1.65) * (x - x0) / (x1 - x0)  # two widths measured: their line
    assert est.epoch_s(mid) == pytest.approx(line)
    assert est.epoch_s() == pytest.approx((2.5 + 1.65) / 2)  # the sample's mean, not the last
    est.add_training(8.0)  # a process's first training: it started the process too
    assert est.overhead_s == pytest.approx(5.5)  # with the prior's 3 s, not all 8 s
    est.add_training(1.0)
    est.add_training(-1.0)  # noise: no training starts in less than no time
    assert est.overhead_s == pytest.approx(2.0)  # the median of 3, 8, 1 and 0


def test_the_run_eta_prices_the_training_under_way_and_the_rest() -> None:
    from rich.progress import Progress

    from search import rundir
    from search.options import SearchOptions
    from search.plan import Estimator
    from search.trial.runner import TrialRunner

    big, small = _arch(4096, True), _arch(512)
    est = Estimator(1.0, warm=big, typical=(small,))
    est.add(big, 3.0)
    est.add(small, 1.0)
    est.add_training(1.0)  # with the prior's 3 s: 2 s per start
    bars = Progress(disable=True)
    overall = bars.add_task("all", total=40, completed=10, note="")
    runner = TrialRunner(
        Path("unused"),
        SearchOptions(),
        lambda values: small,
        None,  # type: ignore[arg-type]
        rundir.Status.__new__(rundir.Status),
        bars,
        overall,
        est,
        n_validation=4,
    )
    task = bars.add_task("trial", total=20, completed=5)
    runner._training[task], runner._left = big, 3  # what _train sets while it trains
    assert runner.eta_s(task) == pytest.approx(15 * 3.0)
    # its 15 epochs at its own 3 s, the other 15 at a typical trial's 1 s, 3 starts of 2 s
    assert runner.eta_s() == pytest.approx(15 * 3.0 + 15 * 1.0 + 3 * 2.0)


def test_an_exhausted_engine_ends_the_loop(tmp_path: Path) -> None:
    engine, runner = FakeEngine(n=2), FakeRunner(tmp_path)
    said: list[str] = []
    assert _loop(tmp_path, engine, runner, trials=4, said=said).run() is Stop.EXHAUSTED
    assert runner.trained == ["t0", "t1"] and "no more trials" in said[-1]


def test_wait_polls_until_the_engine_has_a_trial(tmp_path: Path) -> None:
    engine, runner = FakeEngine([_spec(0), WAIT, WAIT, _spec(1)]), FakeRunner(tmp_path)
    assert _loop(tmp_path, engine, runner, trials=2).run() is Stop.DONE
    assert runner.trained == ["t0", "t1"] and runner.clock[0] == pytest.approx(20.0 + 2 * 2.0)


def test_after_trial_runs_after_every_trial(tmp_path: Path) -> None:
    calls: list[int] = []
    engine, runner = FakeEngine(), FakeRunner(tmp_path)
    loop = _loop(tmp_path, engine, runner, trials=3, after_trial=lambda: calls.append(1))
    loop.run()
    assert len(calls) == 3


def test_serving_waits_for_the_workers_rows(tmp_path: Path) -> None:
    class Serving(FakeEngine):
        def serves_workers(self) -> bool:
            return True

    engine, runner = Serving(), FakeRunner(tmp_path)
    seen: list[int] = []
    loop = _loop(tmp_path, engine, runner, trials=2)

    def sleep(_: float) -> None:  # a worker records a trial while the chief waits
        n = len(res.load_trials(tmp_path))
        res.record_trial(tmp_path, _row(f"w{n}", "completed", 0.6), [])

    loop.sleep = sleep
    loop.serve(seen.append)
    assert seen == [0, 1, 2]


def test_an_optuna_trial_is_pruned_end_to_end(tmp_path: Path) -> None:
    """Optuna's pruner, the runner's stop file and the results table, with a fake trainer
    whose bad configurations (odd trials) score low at every epoch."""
    import optuna
    from rich.progress import Progress

    from search.engines import EngineSettings, make_engine
    from search.options import SearchOptions
    from search.plan import Estimator
    from search.rundir import Status
    from search.space import resolve
    from search.trial import protocol
    from search.trial.runner import TrialRunner

    class FakeProcess:
        def run_trial(self, msg: protocol.Train, on_epoch) -> protocol.Done:
            score = 0.9 if int(msg.trial_id) % 2 == 0 else 0.2
            for epoch in range(msg.initial_epoch + 1, msg.epochs + 1):
                on_epoch(protocol.Epoch(msg.trial_id, epoch, {"val_accuracy": score}, 0.01, 0.0))
                if Path(msg.stop_file).exists():
                    return protocol.Done(msg.trial_id, "pruned", None, score, epoch, epoch)
            return protocol.Done(msg.trial_id, "completed", None, score, msg.epochs, msg.epochs)

    settings = EngineSettings(state_dir=tmp_path, max_epochs=9, factor=3, n_trials=16, seed=3)
    engine = make_engine("optuna", DEFAULT_SPACE_FOR_TEST, settings)
    bars = Progress(disable=True)
    runner = TrialRunner(
        tmp_path,
        SearchOptions(trials=16, max_epochs=9, engine="optuna"),
        lambda v: resolve(v, image_size=67, width=0.125, num_classes=2),
        FakeProcess(),  # type: ignore[arg-type]
        Status(tmp_path, 16),
        bars,
        bars.add_task("all", total=200, note=""),
        Estimator(0.01),
        n_validation=10,
    )
    budget = Budget(None, print)
    loop = SearchLoop(tmp_path, engine, runner, budget, print, 16, 3, lambda e: 0.0)
    assert loop.run() is Stop.DONE
    trials = res.load_trials(tmp_path)
    pruned = trials[trials["status"] == "pruned"]
    assert (pruned["epochs"] < 9).any()  # stopped early, not only at the last rung
    assert all(int(t) % 2 == 1 for t in pruned["trial_id"])  # only the bad ones
    study = engine.study  # type: ignore[attr-defined]
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)


def _evidence_runner(tmp_path: Path, process: object, *, n_validation: int, console=None):
    """A TrialRunner of 9-epoch evidence runs on a fake trial process, its bars hidden."""
    from rich.progress import Progress

    from search.options import SearchOptions
    from search.plan import Estimator
    from search.rundir import Status
    from search.space import resolve
    from search.trial.runner import TrialRunner

    bars = Progress(console=console, disable=True)
    return TrialRunner(
        tmp_path,
        SearchOptions(max_epochs=9),
        lambda v: resolve(v, image_size=67, width=0.125, num_classes=2),
        process,  # type: ignore[arg-type]
        Status(tmp_path, 1),
        bars,
        bars.add_task("all", total=100, note=""),
        Estimator(0.01),
        n_validation=n_validation,
    )


def _fake_predictions(path: str | None) -> None:
    """What a judge or refit run leaves: its test predictions (4 images)."""
    assert path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros(4, dtype=np.int64))


def test_selection_runs_are_validated_on_their_tail_and_judge_runs_on_every_epoch(
    tmp_path: Path,
) -> None:
    """A selection run is ranked on its last epochs' mean, so only they are validated; a
    judge run's best epoch (its test score, the refit's length) is chosen on all of them."""

    from search.confirm import JUDGE, SELECT, Candidate, load_confirm, refit_window
    from search.trial import protocol

    asked: dict[str, int] = {}

    class FakeProcess:
        def run_trial(self, msg: protocol.Train, on_epoch) -> protocol.Done:
            asked[msg.trial_id] = msg.validate_from
            for epoch in range(1, msg.epochs + 1):
                metrics = {"loss": 0.5, "accuracy": 0.8}
                if epoch >= msg.validate_from:
                    metrics["val_accuracy"] = 0.5 + epoch / 100
                on_epoch(protocol.Epoch(msg.trial_id, epoch, metrics, 0.01, 0.0))
            if msg.test_predictions:
                _fake_predictions(msg.test_predictions)
            return protocol.Done(
                msg.trial_id,
                "completed",
                None,
                0.5 + msg.epochs / 100,
                msg.epochs,
                msg.epochs,
                test_accuracy=0.5 if msg.test_predictions else None,
            )

    runner = _evidence_runner(tmp_path, FakeProcess(), n_validation=10)
    cand = Candidate("3", baseline_values(DEFAULT_SPACE_FOR_TEST), 0.6)
    selected = runner.confirm(cand, "top-1", 0, n_test=4, stage=SELECT)
    judged = runner.confirm(cand, "top-1", 0, n_test=4, stage=JUDGE)
    window = refit_window(9)
    assert asked == {"select-3-s1": 9 - window + 1, "confirm-3-s1": 1}
    assert selected.val_tail == pytest.approx(np.mean([0.5 + e / 100 for e in range(7, 10)]))
    assert judged.val_tail == selected.val_tail
    assert set(load_confirm(tmp_path)["stage"]) == {SELECT, JUDGE}


@pytest.mark.parametrize(
    ("fit", "judge_val", "said"),
    [
        (0.95, 0.90, None),  # learned: shipped, nothing said
        (0.50, 0.90, "the winner's best judge run (confirm-3-s1) is shipped instead"),
        (0.50, 0.50, "shipped as it is: no judge run of the winner learned either"),
    ],
)
def test_a_refit_at_chance_on_the_images_it_trained_on_is_flagged_and_recorded(
    tmp_path: Path, fit: float, judge_val: float, said: str | None
) -> None:
    """The refit's weights scored on the train + validation images they trained on decide
    whether it learned (its test score is not read to choose): at chance, the console names
    it, the row says so, and the winner's best judge run is shipped instead when that run
    learned (search.confirm.shipped_runs)."""
    from rich.console import Console

    from search.confirm import JUDGE, Candidate, load_confirm, shipped_runs
    from search.trial import protocol

    class FakeProcess:
        def run_trial(self, msg: protocol.Train, on_epoch) -> protocol.Done:
            for epoch in range(1, msg.epochs + 1):
                metrics = {"accuracy": 0.6} if msg.refit else {"val_accuracy": judge_val}
                on_epoch(protocol.Epoch(msg.trial_id, epoch, metrics, 0.01, 0.0))
            _fake_predictions(msg.test_predictions)
            return protocol.Done(
                msg.trial_id,
                "completed",
                None,
                None if msg.refit else judge_val,
                msg.epochs,
                msg.epochs,
                test_accuracy=0.75,
                fit_accuracy=fit if msg.refit else None,
                fit_n=400 if msg.refit else 0,
            )

    console = Console(record=True, width=300)
    runner = _evidence_runner(tmp_path, FakeProcess(), n_validation=200, console=console)
    cand = Candidate("3", baseline_values(DEFAULT_SPACE_FOR_TEST), 0.6)
    runner.confirm(cand, "top-1", 0, n_test=4, stage=JUDGE)
    row = runner.refit(cand, "top-1", epochs=6, n_test=4)
    learned = said is None
    assert row.fit_accuracy == fit and row.fit_at_chance is not learned
    table = load_confirm(tmp_path)
    assert str(table.set_index("run_id").loc["refit-3", "fit_at_chance"]) == str(not learned)
    shipped = shipped_runs(table, "3", "trainval")
    instead = said is not None and "instead" in said
    assert [r["run_id"] for r in shipped] == ["confirm-3-s1" if instead else "refit-3"]
    text = " ".join(console.export_text().split())  # one line, however the console wrapped
    assert ("DID NOT LEARN" in text) is not learned
    assert said is None or said in text


@pytest.mark.parametrize(
    ("curve", "flagged"),
    [
        ([0.66] + [0.50] * 8, True),  # one lucky epoch, then nothing learned: at chance
        ([0.50] * 6 + [0.60] * 3, False),  # learned late: its last epochs are above chance
    ],
)
def test_a_run_is_flagged_at_chance_on_its_last_epochs_not_its_luckiest(
    tmp_path: Path, curve: list[float], flagged: bool
) -> None:
    """A model that learned nothing (random labels) peaks above chance on some epoch by luck:
    its best epoch (0.66 on 200 images: range 0.59-0.72) would hide it, and the verdict's
    guard for two unlearned models would not hold. The flag reads its last epochs' mean."""
    from rich.console import Console

    from search.confirm import JUDGE, Candidate, load_confirm
    from search.trial import protocol

    class FakeProcess:
        def run_trial(self, msg: protocol.Train, on_epoch) -> protocol.Done:
            for epoch, val in enumerate(curve, start=1):
                on_epoch(protocol.Epoch(msg.trial_id, epoch, {"val_accuracy": val}, 0.01, 0.0))
            _fake_predictions(msg.test_predictions)
            best = max(curve)
            return protocol.Done(
                msg.trial_id,
                "completed",
                None,
                best,
                curve.index(best) + 1,
                msg.epochs,
                test_accuracy=0.5,
            )

    console = Console(record=True, width=300)
    runner = _evidence_runner(tmp_path, FakeProcess(), n_validation=200, console=console)
    cand = Candidate("3", baseline_values(DEFAULT_SPACE_FOR_TEST), 0.6)
    row = runner.confirm(cand, "top-1", 0, n_test=4, stage=JUDGE)
    assert row.val_accuracy == max(curve) and row.at_chance is flagged
    assert str(load_confirm(tmp_path).loc[0, "at_chance"]) == str(flagged)
    assert ("AT CHANCE" in console.export_text()) is flagged


def test_an_extended_search_or_confirmation_trains_only_what_is_new(
    tmp_path: Path,
) -> None:
    from search.confirm import ConfirmRow, choose_winner, load_confirm, record_confirm, run_id
    from search.finish import run_confirmation
    from search.plan import Estimator

    val = {"t5": 0.9, "t1": 0.6}

    class Recorder:
        est = Estimator(1.0)
        folds = 0  # selection runs on the validation images, as recorded before folds

        @staticmethod
        def params(values: dict) -> AlexNetParams:
            return AlexNetParams(dense_units=int(values.get("dense_units", 4096)))

        def __init__(self) -> None:
            self.calls: list[tuple[str, str, str, int]] = []

        def _row(self, cand, name: str, index: int, stage: str, epochs: int) -> None:
            self.calls.append((stage, cand.trial_id, name, index))
            record_confirm(
                tmp_path,
                ConfirmRow(
                    run_id=run_id(cand, index, stage),
                    stage=stage,
                    candidate=name,
                    trial_id=cand.trial_id,
                    seed_index=index + 1,
                    seed=index,
                    values=cand.values,
                    search_val_accuracy=cand.search_val_accuracy,
                    val_accuracy=None if stage == "refit" else val.get(cand.trial_id, 0.5),
                    best_epoch=epochs,
                    at_chance=False,
                    test_accuracy=0.5,
                    n_validation=10,
                    n_test=4,
                    epochs=epochs,
                    seconds=1.0,
                    peak_rss_mb=None,
                    status="completed",
                    error=None,
                    ended_at="now",
                ),
            )

        def confirm(self, cand, name: str, index: int, *, n_test: int, stage: str) -> None:
            self._row(cand, name, index, stage, 2)

        def refit(
            self, cand, name: str, *, epochs: int, n_test: int, refit: str, index: int, seeds: int
        ) -> None:
            self._row(cand, name, index, "refit", epochs)

    def confirm(runner: Recorder, top: int, **options: int) -> None:
        run_confirmation(
            tmp_path,
            runner,  # type: ignore[arg-type]
            Budget(None, print),
            print,
            seeds=2,
            top=top,
            max_epochs=2,
            baseline=baseline_values(),
            test_labels=np.array([0, 1, 0, 1]),
            options=options,
        )

    res.record_trial(tmp_path, _row("baseline", "completed", 0.5), [])
    for i, score in enumerate([0.6, 0.7, 0.65]):
        res.record_trial(tmp_path, _row(f"t{i}", "completed", score, dropout=0.1 * i), [])
    first = Recorder()
    confirm(first, top=1)  # one candidate: no selection; judge with the baseline; refit
    assert first.calls == [
        ("judge", "t1", "top-1", 0),
        ("judge", "baseline", "baseline", 0),
        ("judge", "t1", "top-1", 1),
        ("judge", "baseline", "baseline", 1),
        ("refit", "t1", "top-1", 0),
    ]
    # the search is extended and a new trial takes the top: only its runs are new
    res.record_trial(tmp_path, _row("t5", "completed", 0.8, dropout=0.5), [])
    second = Recorder()
    confirm(second, top=1)
    assert second.calls == [
        ("judge", "t5", "top-1, trial t5", 0),
        ("judge", "t5", "top-1, trial t5", 1),
        ("refit", "t5", "top-1, trial t5", 0),
    ]
    # --confirm-top 1 -> 3: the selection stage runs (never reusing judge runs), and its
    # winner t5 was judged and refitted before: nothing else is trained
    third = Recorder()
    confirm(third, top=3)
    assert {c[0] for c in third.calls} == {"select"}
    assert sorted({c[1] for c in third.calls}) == ["t1", "t2", "t5"]
    assert len(third.calls) == 6
    table = load_confirm(tmp_path)
    assert table["run_id"].is_unique
    from search.confirm import run_candidates

    pick = choose_winner(table, run_candidates(tmp_path, {"confirm_top": 3}))
    assert pick is not None and pick.trial_id == "t5"
    assert Recorder().calls == [] and not [c for c in third.calls if c[0] == "judge"]
    # --refit-seeds 1 -> 3: the winner's first refit is reused, two more are trained
    fourth = Recorder()
    confirm(fourth, top=3, refit_seeds=3)
    assert fourth.calls == [
        ("refit", "t5", "top-1, trial t5", 1),
        ("refit", "t5", "top-1, trial t5", 2),
    ]
    assert {"refit-t5", "refit-t5-s2", "refit-t5-s3"} <= set(load_confirm(tmp_path)["run_id"])


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_progress_bars_fit_the_terminal_and_never_cut_a_number(width: int) -> None:
    """From 80 columns up, every row fits on one line with its counts, ETA and scores whole;
    the bar itself gets the room that is left, and none at 80 columns."""
    from rich.console import Console

    from search.session import training_bars

    console = Console(width=width, force_terminal=True, color_system=None, record=True)
    bars = training_bars(console)
    note = "best 0.7563 (24) | baseline 0.6656"
    bars.add_task("all epochs", total=546, completed=228, note=note, eta="12m03s")
    run = "trial confirm-baseline-s3"  # the longest run id
    bars.add_task(run, total=20, completed=17, note="val_accuracy 0.6188", eta="7s")
    console.print(bars.get_renderable())
    lines = console.export_text().splitlines()
    assert len(lines) == 2 and all(len(line) <= width for line in lines)
    assert "…" not in "".join(lines)
    for shown in ("228/546", "ETA 12m03s", note, "17/20", "0.6188"):
        assert shown in "".join(lines)
    assert ("━" in lines[0]) == (width > 90)
