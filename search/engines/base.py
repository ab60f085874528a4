"""What an engine is: it says what to try next and learns from what was tried; it never trains.

The search loop (``search.loop``) talks to engines only through ``SearchEngine``; each engine's
state lives in the run directory, so a killed search resumes where it stopped.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EngineSettings:
    """How an engine searches and where its state lives (the same for every engine)."""

    state_dir: Path  # the run directory: Keras Tuner state and Optuna's journal live here
    max_epochs: int
    factor: int
    n_trials: int
    seed: int
    storage_url: str | None = None  # Optuna: a database instead of the journal file
    study_name: str = "alexnet-tuner"
    role: str = "chief"  # or "worker"
    oracle_address: str | None = None  # Keras Tuner chief/worker: HOST:PORT of the oracle
    tuner_id: str = "chief"
    objective: str = "accuracy"  # or "accuracy,params": Optuna's multi-objective study


@dataclass(frozen=True)
class TrialSpec:
    """One trial to train: values of the searched parameters and its epoch budget."""

    trial_id: str
    values: dict[str, Any]
    epochs: int  # train until this (cumulative) epoch
    initial_epoch: int = 0
    parent_id: str | None = None  # Hyperband: continue from this trial's checkpoint
    bracket: int | None = None
    round: int | None = None
    # Optuna: a trial requeued after its process died repeats trial ``retry_of`` (same values,
    # same seed), and continues its training from that trial's saved epoch
    retry_of: str | None = None
    seed_of: str | None = None  # the trial id its seed comes from (the first of a chain)


@dataclass(frozen=True)
class TrialOutcome:
    """What the engine learns from an ended trial."""

    status: str  # completed, failed, pruned
    val_accuracy: float | None
    per_epoch: list[tuple[int, float]] = field(default_factory=list)  # (epoch, val_accuracy)
    error: str | None = None
    params: int | None = None  # the model's parameter count (a multi-objective study's 2nd)


WAIT = TrialSpec("(wait)", {}, 0)
"""``next_trial`` result: nothing to start now, ask again shortly."""


class SearchEngine(abc.ABC):
    """What to try next (``next_trial``) and what was learnt (``finish``); the other hooks
    have defaults that suit an engine used by one process."""

    name: str

    @abc.abstractmethod
    def next_trial(self) -> TrialSpec | None:
        """The next trial, ``WAIT``, or None when the engine has nothing more to try."""

    @abc.abstractmethod
    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        """Record an ended trial."""

    @abc.abstractmethod
    def schedule(self, n_trials: int) -> list[TrialSpec]:
        """The planned epoch budget of the first ``n_trials`` trials (values left empty)."""

    def resume(self, recorded: dict[str, TrialOutcome]) -> None:  # noqa: B027 (optional hook)
        """Called once before the loop with every trial the results table holds."""

    def should_prune(self, spec: TrialSpec, epoch: int, val_accuracy: float) -> bool:
        """Called after every epoch; True stops the trial as pruned."""
        return False

    def needed_checkpoints(self) -> set[str]:
        """Trials whose checkpoints a later trial will start from."""
        return set()

    def in_flight(self, recorded: dict[str, TrialOutcome]) -> int:
        """Trials other processes are running now (engines shared between processes)."""
        return 0

    def serves_workers(self) -> bool:
        """True when this process only serves the search to worker processes, which train."""
        return False

    def ongoing(self) -> int:
        """Trials handed out to worker processes and not ended yet (when serving them)."""
        return 0

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the engine holds (a server, a connection)."""

    def describe(self, n_trials: int) -> list[str]:
        plan = self.schedule(n_trials)
        total = sum(s.epochs - s.initial_epoch for s in plan)
        return [
            f"{n_trials} trials of {plan[0].epochs if plan else 0} epochs each ({total} epochs)"
        ]
