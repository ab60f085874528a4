"""Keras Tuner's oracles used directly (no ``Tuner``): Hyperband, random search, Bayesian.

The oracle chooses values and keeps its state in the run directory; the trial process trains.
Private Keras Tuner names are used only through ``kt_adapter``.
"""

from __future__ import annotations

import math
from typing import Any

from search.engines import kt_adapter as kta
from search.engines.base import WAIT, EngineSettings, SearchEngine, TrialOutcome, TrialSpec
from search.space import Space, complete, to_keras_tuner

KT_SEED_FOR_ZERO = 2**31 - 1


class KerasTunerEngine(SearchEngine):
    """One Keras Tuner oracle; subclasses say which (``_make_oracle``)."""

    def __init__(self, space: Space, settings: EngineSettings) -> None:
        import keras_tuner as kt

        kta.check()
        kta.atomic_saves()
        self.space = space
        self.max_epochs = settings.max_epochs
        self.factor = settings.factor
        common: dict[str, Any] = {
            "objective": kt.Objective("val_accuracy", direction="max"),
            "hyperparameters": to_keras_tuner(space),
            # Keras Tuner reads `seed or random.randint(...)`: 0 would silently become a
            # random seed, so it gets a fixed stand-in (every other seed passes unchanged).
            "seed": settings.seed if settings.seed != 0 else KT_SEED_FOR_ZERO,
            # Failure limits are enforced by the search loop, the same for every engine.
            "max_retries_per_trial": 0,
            "max_consecutive_failed_trials": 10**9,
        }
        oracle = self._make_oracle(kt, common, settings)
        oracle.max_trials = settings.n_trials  # exactly --trials trials, also for Hyperband
        kta.quiet(oracle)
        self.local = oracle  # the schedule's arithmetic; the search state itself on a chief
        self.tuner_id = settings.tuner_id
        self._server: Any = None
        if settings.role == "worker":
            if not settings.oracle_address:
                raise ValueError("a Keras Tuner worker needs the chief's oracle address.")
            self.oracle = kta.oracle_client(oracle, settings.oracle_address, settings.tuner_id)
            return
        kta.attach(oracle, settings.state_dir)
        self._extend(oracle, settings)
        self.oracle = oracle
        if settings.oracle_address:
            self._server = kta.serve_oracle(oracle, settings.oracle_address)

    def _make_oracle(self, kt: Any, common: dict[str, Any], settings: EngineSettings) -> Any:
        raise NotImplementedError

    def _extend(self, oracle: Any, settings: EngineSettings) -> None:
        """After a reload: let a search given a larger --trials go on (``max_trials`` is not
        part of the oracle's saved state, so it already holds the new number)."""

    def serves_workers(self) -> bool:
        return self._server is not None

    def ongoing(self) -> int:
        """Trials handed out by this chief's oracle and not ended yet."""
        return len(self.local.ongoing_trials) + kta.retries_pending(self.local)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(grace=5)
            self._server = None

    def next_trial(self) -> TrialSpec | None:
        trial = self.oracle.create_trial(self.tuner_id)
        if trial.status == "IDLE":  # a promotion waits for trials other workers are running
            return WAIT
        if trial.status != "RUNNING":
            return None
        values = trial.hyperparameters.values
        return TrialSpec(
            trial_id=trial.trial_id,
            values=complete(self.space, values),
            epochs=int(values.get("tuner/epochs", self.max_epochs)),
            initial_epoch=int(values.get("tuner/initial_epoch", 0)),
            parent_id=values.get("tuner/trial_id"),
            bracket=values.get("tuner/bracket"),
            round=values.get("tuner/round"),
        )

    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        for epoch, value in outcome.per_epoch:
            self.oracle.update_trial(spec.trial_id, {"val_accuracy": value}, step=epoch)
        trial = self.oracle.get_trial(spec.trial_id)
        ok = outcome.status != "failed" and outcome.per_epoch
        trial.status = "COMPLETED" if ok else "FAILED"
        trial.message = outcome.error
        self.oracle.end_trial(trial)

    def schedule(self, n_trials: int) -> list[TrialSpec]:
        return [TrialSpec(f"{i}", {}, self.max_epochs) for i in range(n_trials)]


class RandomSearchEngine(KerasTunerEngine):
    name = "random"

    def _make_oracle(self, kt: Any, common: dict[str, Any], settings: EngineSettings) -> Any:
        return kt.oracles.RandomSearchOracle(max_trials=settings.n_trials, **common)


class BayesianEngine(KerasTunerEngine):
    name = "bayesian"

    def _make_oracle(self, kt: Any, common: dict[str, Any], settings: EngineSettings) -> Any:
        return kt.oracles.BayesianOptimizationOracle(
            max_trials=settings.n_trials, num_initial_points=min(5, settings.n_trials), **common
        )


class HyperbandEngine(KerasTunerEngine):
    """Hyperband: brackets of many short trials, the best promoted to longer budgets, each
    continuing from its parent's checkpoint."""

    name = "hyperband"

    def _make_oracle(self, kt: Any, common: dict[str, Any], settings: EngineSettings) -> Any:
        self.per_iteration = hyperband_trials_per_iteration(settings.max_epochs, settings.factor)
        return kt.oracles.HyperbandOracle(
            max_epochs=settings.max_epochs,
            factor=settings.factor,
            hyperband_iterations=max(1, math.ceil(settings.n_trials / self.per_iteration)),
            **common,
        )

    def _extend(self, oracle: Any, settings: EngineSettings) -> None:
        # the saved state restores the iterations the search was started with; a larger
        # --trials runs the next iteration's brackets, in Keras Tuner's own order
        oracle.hyperband_iterations = max(
            oracle.hyperband_iterations,
            math.ceil(settings.n_trials / self.per_iteration),
        )

    def needed_checkpoints(self) -> set[str]:
        o = self.local
        keep: set[str] = set()
        for trial in o.trials.values():
            if trial.status not in ("COMPLETED", "FAILED"):  # running or waiting for a retry
                parent = trial.hyperparameters.values.get("tuner/trial_id")
                if parent:
                    keep.add(parent)
        for num, rounds in kta.open_brackets(o):
            for r in range(len(rounds) - 1):
                slots = kta.round_size(o, num, r + 1) - len(rounds[r + 1])
                if slots <= 0:
                    continue
                chosen = {info["past_id"] for info in rounds[r + 1]}
                pending = [o.trials[info["id"]] for info in rounds[r] if info["id"] not in chosen]
                # Promotion takes the best completed candidates (Keras Tuner's own ordering):
                # a completed trial ranked below the open slots can never be promoted.
                done = sorted(
                    (t for t in pending if t.status == "COMPLETED"),
                    key=lambda t: t.score,
                    reverse=True,
                )
                keep |= {t.trial_id for t in done[:slots]}
                keep |= {t.trial_id for t in pending if t.status not in ("COMPLETED", "FAILED")}
        return keep

    def schedule(self, n_trials: int) -> list[TrialSpec]:
        o = self.local
        plan: list[TrialSpec] = []
        while len(plan) < n_trials:
            for bracket in reversed(range(kta.num_brackets(o))):
                for r in range(kta.num_rounds(o, bracket)):
                    plan += [
                        TrialSpec(
                            f"{len(plan) + i}",
                            {},
                            kta.round_epochs(o, bracket, r),
                            kta.round_epochs(o, bracket, r - 1),
                            bracket=bracket,
                            round=r,
                        )
                        for i in range(kta.round_size(o, bracket, r))
                    ]
        return plan[:n_trials]

    def describe(self, n_trials: int) -> list[str]:
        o = self.local
        lines = [
            f"Hyperband: max {self.max_epochs} epochs, factor {self.factor}; one iteration = "
            f"{self.per_iteration} trials in {kta.num_brackets(o)} brackets:"
        ]
        for bracket in reversed(range(kta.num_brackets(o))):
            rounds = ", ".join(
                f"{kta.round_size(o, bracket, r)} x {kta.round_epochs(o, bracket, r)} ep"
                for r in range(kta.num_rounds(o, bracket))
            )
            lines.append(f"  bracket {bracket}: {rounds}")
        plan = self.schedule(n_trials)
        total = sum(s.epochs - s.initial_epoch for s in plan)
        if n_trials % self.per_iteration:
            lines.append(
                f"  {n_trials} trials = {n_trials // self.per_iteration} full "
                f"iteration(s) + the first {n_trials % self.per_iteration} trials of "
                "the next, in the order above (most-trials bracket first)"
            )
        lines.append(
            f"  {total} epochs in all (a promoted trial starts from its parent's best-epoch "
            "weights, with a fresh optimizer)"
        )
        return lines


def hyperband_trials_per_iteration(max_epochs: int, factor: int) -> int:
    import keras_tuner as kt

    o = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor
    )
    return sum(
        kta.round_size(o, b, r)
        for b in range(kta.num_brackets(o))
        for r in range(kta.num_rounds(o, b))
    )
