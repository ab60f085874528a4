"""Engines without training: schedules, promotions and which checkpoints are still needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.engines import EngineSettings, TrialOutcome, make_engine
from search.engines import kt_adapter as kta
from search.engines.keras_tuner import HyperbandEngine, KerasTunerEngine
from search.engines.optuna_tpe import OptunaEngine
from search.space import DEFAULT_SPACE, searched


def _dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _settings(state_dir: Path, max_epochs: int, n_trials: int) -> EngineSettings:
    return EngineSettings(
        state_dir=state_dir, max_epochs=max_epochs, factor=3, n_trials=n_trials, seed=1
    )


def _finish(engine, spec, score: float | None) -> None:
    status = "completed" if score is not None else "failed"
    per_epoch = [(spec.epochs, score)] if score is not None else []
    engine.finish(spec, TrialOutcome(status, score, per_epoch))


def test_hyperband_schedule_of_the_default_budget(tmp_path: Path) -> None:
    engine = make_engine("hyperband", DEFAULT_SPACE, _settings(tmp_path, 20, 30))
    plan = engine.schedule(30)
    assert len(plan) == 30
    assert [(s.initial_epoch, s.epochs) for s in plan[:12]] == [(0, 3)] * 12
    assert [(s.initial_epoch, s.epochs) for s in plan[12:18]] == [(3, 7)] * 4 + [(7, 20)] * 2
    assert sum(s.epochs - s.initial_epoch for s in plan) == 226
    assert len(engine.schedule(40)) == 40


def test_hyperband_keeps_only_promotable_checkpoints(tmp_path: Path) -> None:
    engine = make_engine("hyperband", DEFAULT_SPACE, _settings(tmp_path, 3, 6))
    assert isinstance(engine, KerasTunerEngine)
    round0 = []
    for score in (0.5, 0.7, 0.6):
        spec = engine.next_trial()
        assert spec is not None and (spec.initial_epoch, spec.epochs) == (0, 1)
        assert spec.trial_id in engine.needed_checkpoints()  # a running trial may be promoted
        _finish(engine, spec, score)
        round0.append(spec)
    assert engine.needed_checkpoints() == {round0[1].trial_id}  # one slot: only the best
    promoted = engine.next_trial()
    assert promoted.parent_id == round0[1].trial_id
    assert (promoted.initial_epoch, promoted.epochs) == (1, 3)
    assert engine.needed_checkpoints() == {round0[1].trial_id}  # its child is running
    _finish(engine, promoted, 0.75)
    assert engine.needed_checkpoints() == set()


def test_keras_tuner_state_survives_a_restart(tmp_path: Path) -> None:
    first = make_engine("random", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    a = first.next_trial()
    _finish(first, a, 0.6)
    b = first.next_trial()  # left running, as by a kill -9
    again = make_engine("random", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    retried = again.next_trial()
    assert retried.trial_id == b.trial_id and retried.values == b.values


def test_a_trial_written_but_not_recorded_by_a_kill_is_drawn_again(tmp_path: Path) -> None:
    # Keras Tuner writes trial_N/trial.json, then oracle.json: a kill -9 between the two
    # left an orphan that took trial N's number and place, so a resumed search ran one short.
    first = make_engine("hyperband", DEFAULT_SPACE, _settings(tmp_path, 3, 5))
    ended = {}
    for score in (0.5, 0.7, 0.6):
        spec = first.next_trial()
        _finish(first, spec, score)
        ended[spec.trial_id] = score
    state = tmp_path / "keras_tuner" / "oracle.json"
    before = state.read_text()
    lost = first.next_trial()  # the promotion of the best, trial 3
    assert lost.trial_id == "3" and (tmp_path / "keras_tuner" / "trial_3" / "trial.json").exists()
    state.write_text(before)  # killed before oracle.json recorded it
    again = make_engine("hyperband", DEFAULT_SPACE, _settings(tmp_path, 3, 5))
    drawn = again.next_trial()
    while drawn.trial_id in ended:  # Keras Tuner hands out again the trial it ended last
        _finish(again, drawn, ended[drawn.trial_id])  # the search loop replays it so
        drawn = again.next_trial()
    assert (drawn.trial_id, drawn.values, drawn.parent_id) == ("3", lost.values, lost.parent_id)
    _finish(again, drawn, 0.8)
    last = again.next_trial()
    assert last.trial_id == "4"
    _finish(again, last, 0.6)
    assert again.next_trial() is None  # exactly --trials trials, none of them lost


def test_optuna_requeues_a_trial_left_running(tmp_path: Path) -> None:
    first = make_engine("optuna", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert isinstance(first, OptunaEngine)
    a = first.next_trial()
    _finish(first, a, 0.6)
    b = first.next_trial()
    first._running[b.trial_id].set_user_attr("pid", _dead_pid())  # as if killed -9
    again = make_engine("optuna", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert isinstance(again, OptunaEngine)
    again.resume({})
    retried = again.next_trial()
    assert retried.values == pytest.approx(b.values)
    assert retried.trial_id != b.trial_id


def test_optuna_fails_a_trial_whose_process_died_before_claiming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from search.engines import optuna_tpe

    first = make_engine("optuna", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert isinstance(first, OptunaEngine)
    orphan = first.study.ask()  # asked, then killed before naming its process
    again = make_engine("optuna", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert isinstance(again, OptunaEngine)
    assert again.in_flight({}) == 1  # just asked: its process may still claim it
    monkeypatch.setattr(optuna_tpe, "CLAIM_S", 0.0)
    assert again.in_flight({}) == 0  # never claimed: dead, so the search does not wait forever
    state = again.study.trials[orphan.number].state
    assert state == optuna.trial.TrialState.FAIL


def test_an_optuna_trial_names_its_process_only_with_all_its_values(tmp_path: Path) -> None:
    engine = make_engine("optuna", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert isinstance(engine, OptunaEngine)
    seen: list[tuple[str, int]] = []
    real = engine.study.ask

    def ask(*args, **kwargs):
        trial = real(*args, **kwargs)
        claim = trial.set_user_attr

        def set_user_attr(key, value):
            seen.append((key, len(engine.study.trials[trial.number].params)))
            claim(key, value)

        trial.set_user_attr = set_user_attr
        return trial

    engine.study.ask = ask
    engine.next_trial()
    opened = len(searched(DEFAULT_SPACE))
    assert ("pid", opened) in seen


@pytest.mark.parametrize("kind", ["hyperband", "random", "bayesian", "optuna"])
def test_the_same_seed_gives_the_same_trials_and_zero_is_a_seed(tmp_path: Path, kind: str) -> None:
    from dataclasses import replace

    def first_values(folder: str, seed: int) -> list[dict]:
        (tmp_path / folder).mkdir()
        settings = replace(_settings(tmp_path / folder, 3, 4), seed=seed)
        engine = make_engine(kind, DEFAULT_SPACE, settings)
        values = []
        for score in (0.6, 0.7, 0.65):
            spec = engine.next_trial()
            assert spec is not None
            values.append(spec.values)
            _finish(engine, spec, score)  # what it learns steers the next (Bayesian, TPE)
        return values

    assert first_values("a", 11) == first_values("b", 11)
    assert first_values("c", 0) == first_values("d", 0)  # not a random seed each time
    assert first_values("e", 0) != first_values("f", 1)


def test_hyperband_draws_as_stock_keras_tuner_and_seeds_4_apart_share_trials(
    tmp_path: Path,
) -> None:
    """A seed samples the configurations stock Keras Tuner samples with it (what makes
    ``bench.shipped``'s ours-against-stock a paired comparison), and Keras Tuner seeds each
    draw with the next integer, one per parameter: with the built-in space's 4 parameters,
    ``--seed 15`` starts where ``--seed 11``'s second trial did (the README's warning)."""
    from dataclasses import replace

    from bench.peer import Settings, stock_hypermodel, stock_tuner

    def ours(seed: int, n: int) -> list[dict]:
        (tmp_path / f"ours-{seed}").mkdir()
        settings = replace(_settings(tmp_path / f"ours-{seed}", 20, 30), seed=seed)
        engine = make_engine("hyperband", DEFAULT_SPACE, settings)
        values = []
        for _ in range(n):
            spec = engine.next_trial()
            assert spec is not None
            values.append(spec.values)
            _finish(engine, spec, 0.6)
        return values

    stock_settings = Settings(
        data_dir=tmp_path,
        trials=30,
        image_size=67,
        width=0.25,
        batch_size=8,
        max_epochs=20,
        factor=3,
        seed=11,
        subset=None,
    )
    tuner = stock_tuner(stock_settings, tmp_path, stock_hypermodel(stock_settings))
    stock = [tuner.oracle.create_trial(f"t{i}").hyperparameters.values for i in range(3)]
    eleven = ours(11, 3)
    names = [p.name for p in searched(DEFAULT_SPACE)]
    assert names == ["dropout", "lrn", "dense_units", "learning_rate"]
    assert [{k: v[k] for k in names} for v in stock] == [{k: v[k] for k in names} for v in eleven]
    assert len({v["dropout"] for v in eleven}) == 3  # three different configurations
    assert ours(15, 2) == eleven[1:3]
    assert ours(12, 1)[0] != eleven[0]


def test_engines_are_chosen_by_name_and_hyperband_is_a_subclass(tmp_path: Path) -> None:
    engine = make_engine("hyperband", DEFAULT_SPACE, _settings(tmp_path, 3, 4))
    assert isinstance(engine, HyperbandEngine) and isinstance(engine, KerasTunerEngine)
    with pytest.raises(ValueError, match="engine must be one of"):
        make_engine("grid", DEFAULT_SPACE, _settings(tmp_path, 3, 4))


def test_the_keras_tuner_private_api_we_use_is_there() -> None:
    kta.check()  # fails, naming what changed, on a Keras Tuner release that changed it
    import keras_tuner as kt

    o = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=20, factor=3
    )
    # Hyperband's geometry as Li et al. define it, read through the adapter
    assert kta.num_brackets(o) == 3
    assert [kta.round_size(o, 2, r) for r in range(kta.num_rounds(o, 2))] == [12, 4, 2]
    assert [kta.round_epochs(o, 2, r) for r in range(-1, 3)] == [0, 3, 7, 20]


def test_the_adapter_check_names_a_missing_private_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras_tuner as kt

    monkeypatch.delattr(kt.oracles.HyperbandOracle, "_get_size")
    with pytest.raises(RuntimeError, match=r"HyperbandOracle._get_size .*keras-tuner==1.4"):
        kta.check()


def test_keras_tuner_state_is_written_atomically_and_a_torn_file_is_a_clear_error(
    tmp_path: Path,
) -> None:
    from keras_tuner.src import utils

    from search.rundir import RunDirError

    engine = make_engine("random", DEFAULT_SPACE, _settings(tmp_path, 2, 3))
    assert getattr(utils.save_json, "atomic", False)  # Keras Tuner's writes go through ours
    spec = engine.next_trial()
    _finish(engine, spec, 0.6)
    state = tmp_path / "keras_tuner"
    assert not list(state.rglob(".*tmp*"))  # no temporary file left behind
    trial_file = next(state.glob("trial_*/trial.json"))
    trial_file.write_text(trial_file.read_text()[:20])  # torn, as by an older version's crash
    with pytest.raises(RunDirError, match=r"damaged .*start a new --run-dir"):
        make_engine("random", DEFAULT_SPACE, _settings(tmp_path, 2, 3))


@pytest.mark.parametrize("kind", ["random", "hyperband", "bayesian"])
def test_a_parameter_held_fixed_does_not_change_the_trials_a_seed_gives(
    tmp_path: Path, kind: str
) -> None:
    """Adding a parameter that stays fixed (weight_decay, by default) leaves every existing
    search as it was: Keras Tuner would draw a seed for it too."""
    without = tuple(p for p in DEFAULT_SPACE if p.name != "weight_decay")

    def values(space, folder: str) -> list[dict]:
        engine = make_engine(kind, space, _settings(tmp_path / folder, 3, 6))
        out = []
        for score in (0.6, 0.7, 0.65, 0.62):
            spec = engine.next_trial()
            out.append({k: v for k, v in spec.values.items() if k != "weight_decay"})
            _finish(engine, spec, score)
        return out

    with_fixed = values(DEFAULT_SPACE, "a")
    assert with_fixed == values(without, "b")
    engine = make_engine(kind, DEFAULT_SPACE, _settings(tmp_path / "c", 3, 6))
    assert engine.next_trial().values["weight_decay"] == 0.0  # filled in at its value


def test_optuna_multi_objective_learns_accuracy_and_size_without_pruning(tmp_path: Path) -> None:
    import dataclasses

    import optuna

    settings = dataclasses.replace(_settings(tmp_path, 3, 6), objective="accuracy,params")
    engine = make_engine("optuna", DEFAULT_SPACE, settings)
    assert isinstance(engine, OptunaEngine) and "multi-objective" in engine.describe(6)[0]
    told = []
    for score, size in [(0.70, 5_000_000), (0.72, 9_000_000), (0.65, 1_000_000), (0.60, 8e6)]:
        spec = engine.next_trial()
        assert not engine.should_prune(spec, 1, 0.1)  # no pruner: every trial trains fully
        engine.finish(spec, TrialOutcome("completed", score, [(3, score)], params=int(size)))
        told.append((score, int(size)))
    failed = engine.next_trial()
    engine.finish(failed, TrialOutcome("failed", None, [], error="boom"))
    study = engine.study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert [tuple(t.values) for t in done] == told
    front = sorted(tuple(t.values) for t in study.best_trials)
    assert front == [(0.65, 1_000_000), (0.70, 5_000_000), (0.72, 9_000_000)]
