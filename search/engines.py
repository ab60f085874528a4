"""Search engines: one small base class, a Keras Tuner implementation and an Optuna one.

An engine says what to try next and learns from what was tried; it never trains anything.
Its state lives in the run directory, so a killed search resumes where it stopped.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.space import PARAM_NAMES, Space, suggest_optuna, to_keras_tuner
from search.storage import StorageError, mask_url

ENGINES = ("hyperband", "random", "bayesian", "optuna")
HEARTBEAT_S = 20  # Optuna database heartbeat; a trial silent for 3x this is stale


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


@dataclass(frozen=True)
class TrialOutcome:
    """What the engine learns from an ended trial."""

    status: str  # completed, failed, pruned
    val_accuracy: float | None
    per_epoch: list[tuple[int, float]] = field(default_factory=list)  # (epoch, val_accuracy)
    error: str | None = None


WAIT = TrialSpec("(wait)", {}, 0)
"""``next_trial`` result: nothing to start now, ask again shortly."""


class SearchEngine(abc.ABC):
    """What to try next (``next_trial``) and what was learnt (``finish``)."""

    name: str

    @abc.abstractmethod
    def next_trial(self) -> TrialSpec | None:
        """The next trial, or None when the engine has nothing more to try."""

    @abc.abstractmethod
    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        """Record an ended trial."""

    def should_prune(self, spec: TrialSpec, epoch: int, val_accuracy: float) -> bool:
        """Called after every epoch; True stops the trial as pruned."""
        return False

    def needed_checkpoints(self) -> set[str]:
        """Trials whose checkpoints a later trial will start from."""
        return set()

    def in_flight(self, recorded: dict[str, TrialOutcome]) -> int:
        """Trials other processes are running now (engines shared between processes)."""
        return 0

    @abc.abstractmethod
    def schedule(self, n_trials: int) -> list[TrialSpec]:
        """The planned epoch budget of the first ``n_trials`` trials (values left empty)."""

    def describe(self, n_trials: int) -> list[str]:
        plan = self.schedule(n_trials)
        total = sum(s.epochs - s.initial_epoch for s in plan)
        return [
            f"{n_trials} trials of {plan[0].epochs if plan else 0} epochs each ({total} epochs)"
        ]


KT_SEED_FOR_ZERO = 2**31 - 1


class KerasTunerEngine(SearchEngine):
    """Keras Tuner's Hyperband, random search or Bayesian optimisation oracle, used directly."""

    def __init__(self, kind: str, space: Space, settings: EngineSettings) -> None:
        import keras_tuner as kt

        max_epochs, factor, n_trials = settings.max_epochs, settings.factor, settings.n_trials
        state_dir, oracle_address = settings.state_dir, settings.oracle_address

        self.name = kind
        self.max_epochs = max_epochs
        objective = kt.Objective("val_accuracy", direction="max")
        common: dict[str, Any] = {
            "objective": objective,
            "hyperparameters": to_keras_tuner(space),
            # Keras Tuner reads `seed or random.randint(...)`: 0 would silently become a
            # random seed, so it gets a fixed stand-in (every other seed passes unchanged).
            "seed": settings.seed if settings.seed != 0 else KT_SEED_FOR_ZERO,
            # Failure limits are enforced by the search loop, the same for every engine.
            "max_retries_per_trial": 0,
            "max_consecutive_failed_trials": 10**9,
        }
        if kind == "hyperband":
            self.per_iteration = _hyperband_trials_per_iteration(max_epochs, factor)
            oracle = kt.oracles.HyperbandOracle(
                max_epochs=max_epochs,
                factor=factor,
                hyperband_iterations=max(1, math.ceil(n_trials / self.per_iteration)),
                **common,
            )
        elif kind == "random":
            oracle = kt.oracles.RandomSearchOracle(max_trials=n_trials, **common)
        elif kind == "bayesian":
            oracle = kt.oracles.BayesianOptimizationOracle(
                max_trials=n_trials, num_initial_points=min(5, n_trials), **common
            )
        else:
            raise ValueError(f"kind must be one of hyperband, random, bayesian, but got {kind=}.")
        oracle.max_trials = n_trials  # exactly --trials trials, also for Hyperband
        oracle._display.verbose = 0  # our own progress display reports trials
        self.local = oracle  # the schedule's arithmetic; the search state itself on a chief
        self.tuner_id = settings.tuner_id
        self._server: Any = None
        if settings.role == "worker":
            if not oracle_address:
                raise ValueError("a Keras Tuner worker needs the chief's oracle address.")
            self.oracle = _oracle_client(oracle, oracle_address, settings.tuner_id)
            return
        oracle._set_project_dir(str(state_dir), "keras_tuner")
        if (Path(state_dir) / "keras_tuner" / "oracle.json").exists():
            oracle.reload()
        self.oracle = oracle
        if oracle_address:
            self._server = _serve_oracle(oracle, oracle_address)

    @property
    def serving(self) -> bool:
        return self._server is not None

    def ongoing(self) -> int:
        """Trials handed out by this chief's oracle and not ended yet."""
        return len(self.local.ongoing_trials) + len(getattr(self.local, "_retry_queue", []))

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
            values={k: values[k] for k in PARAM_NAMES},
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

    def needed_checkpoints(self) -> set[str]:
        keep: set[str] = set()
        for trial in self.local.trials.values():
            if trial.status not in ("COMPLETED", "FAILED"):  # running or waiting for a retry
                parent = trial.hyperparameters.values.get("tuner/trial_id")
                if parent:
                    keep.add(parent)
        for bracket in getattr(self.local, "_brackets", []):
            rounds, num = bracket["rounds"], bracket["bracket_num"]
            for r in range(len(rounds) - 1):
                slots = self.local._get_size(num, r + 1) - len(rounds[r + 1])
                if slots <= 0:
                    continue
                chosen = {info["past_id"] for info in rounds[r + 1]}
                pending = [
                    self.local.trials[info["id"]] for info in rounds[r] if info["id"] not in chosen
                ]
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
        if self.name != "hyperband":
            return [TrialSpec(f"{i}", {}, self.max_epochs) for i in range(n_trials)]
        o = self.local
        plan: list[TrialSpec] = []
        while len(plan) < n_trials:
            for bracket in reversed(range(o._get_num_brackets())):
                for r in range(o._get_num_rounds(bracket)):
                    start = o._get_epochs(bracket, r - 1) if r else 0
                    plan += [
                        TrialSpec(
                            f"{len(plan) + i}",
                            {},
                            o._get_epochs(bracket, r),
                            start,
                            bracket=bracket,
                            round=r,
                        )
                        for i in range(o._get_size(bracket, r))
                    ]
        return plan[:n_trials]

    def describe(self, n_trials: int) -> list[str]:
        if self.name != "hyperband":
            return super().describe(n_trials)
        o = self.local
        lines = [
            f"Hyperband: max {self.max_epochs} epochs, factor {o.factor}; one iteration = "
            f"{self.per_iteration} trials in {o._get_num_brackets()} brackets:"
        ]
        for bracket in reversed(range(o._get_num_brackets())):
            rounds = ", ".join(
                f"{o._get_size(bracket, r)} x {o._get_epochs(bracket, r)} ep"
                for r in range(o._get_num_rounds(bracket))
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
            f"  {total} epochs in all (promoted trials continue from their parent's checkpoint)"
        )
        return lines


def _oracle_client(oracle: Any, address: str, tuner_id: str) -> Any:
    """Keras Tuner's gRPC client of a chief's oracle (configured by its KERASTUNER_* vars)."""
    from keras_tuner.src.distribute.oracle_client import OracleClient

    host, _, port = address.rpartition(":")
    os.environ.update(
        {
            "KERASTUNER_ORACLE_IP": host,
            "KERASTUNER_ORACLE_PORT": port,
            "KERASTUNER_TUNER_ID": tuner_id,
        }
    )
    return OracleClient(oracle)


def _serve_oracle(oracle: Any, address: str) -> Any:
    """Serve ``oracle`` to workers with Keras Tuner's own gRPC servicer, in this process."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} for Keras Tuner workers (port in use?).")
    server.start()
    return server


def _hyperband_trials_per_iteration(max_epochs: int, factor: int) -> int:
    import keras_tuner as kt

    o = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=max_epochs, factor=factor
    )
    return sum(
        o._get_size(b, r) for b in range(o._get_num_brackets()) for r in range(o._get_num_rounds(b))
    )


def _connect(make: Any, url: str) -> Any:
    """The database storage, or a ``StorageError`` (exit 2) that names the masked URL and says
    what the driver reported, with any password taken out of its words."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return make()
    except (SQLAlchemyError, ImportError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        password = make_url(url).password
        if password:
            reason = reason.replace(str(password), "***")
        raise StorageError(
            f"cannot use the study storage {mask_url(url)}: {reason}. Check that the server "
            "runs and is reachable, the database exists, and the password is in $PGPASSWORD "
            "(pip install -e '.[postgres]' provides the driver)."
        ) from None


class OptunaEngine(SearchEngine):
    """Optuna's TPE sampler with its Hyperband pruner, fed per-epoch validation accuracy.

    Several processes may work on one study: on one host through the run directory's journal
    file (trials of dead local processes are found by their pid), on several through a
    database URL (trials of dead processes are found by Optuna's heartbeat). Either way a
    stale trial is failed and its parameters are queued again, so it is retried as it was.
    """

    name = "optuna"

    def __init__(self, space: Space, settings: EngineSettings) -> None:
        import optuna
        from optuna.storages import JournalStorage, RDBStorage, RetryFailedTrialCallback
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.max_epochs = settings.max_epochs
        self.storage: Any
        if settings.storage_url:
            self.storage = _connect(
                lambda: RDBStorage(
                    settings.storage_url,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=3 * HEARTBEAT_S,
                    failed_trial_callback=RetryFailedTrialCallback(max_retry=2),
                ),
                settings.storage_url,
            )
        else:
            self.storage = JournalStorage(
                JournalFileBackend(str(Path(settings.state_dir) / "optuna.journal"))
            )
        self.study = optuna.create_study(
            study_name=settings.study_name,
            storage=self.storage,
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=settings.seed),
            pruner=optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=settings.max_epochs, reduction_factor=settings.factor
            ),
        )
        self._running: dict[str, Any] = {}
        self._beats: dict[str, threading.Event] = {}

    def _settle(self, recorded: dict[str, TrialOutcome]) -> None:
        """Tell trials that were recorded but never told; fail and requeue dead ones."""
        import optuna

        from search.storage import process_alive

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:
            trial_id = f"{t.number:04d}"
            if trial_id in self._running:
                continue  # ours, in progress
            if trial_id in recorded:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._tell(t.number, recorded[trial_id])
            elif not isinstance(self.storage, optuna.storages.RDBStorage) and not process_alive(
                t.user_attrs.get("host"), t.user_attrs.get("pid")
            ):
                with contextlib.suppress(RuntimeError, ValueError):
                    self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                    self.study.enqueue_trial(t.params, skip_if_exists=False)
        optuna.storages.fail_stale_trials(self.study)  # database: by heartbeat

    def resume(self, recorded: dict[str, TrialOutcome]) -> None:
        self._settle(recorded)

    def in_flight(self, recorded: dict[str, TrialOutcome]) -> int:
        import optuna

        self._settle(recorded)
        return len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))

    def next_trial(self) -> TrialSpec | None:
        from search.storage import this_host

        trial = self.study.ask()
        trial.set_user_attr("host", this_host())
        trial.set_user_attr("pid", os.getpid())
        values = suggest_optuna(trial, self.space)
        trial_id = f"{trial.number:04d}"
        self._running[trial_id] = trial
        if hasattr(self.storage, "record_heartbeat"):
            stop = threading.Event()
            self._beats[trial_id] = stop
            threading.Thread(
                target=self._heartbeat,
                args=(trial._trial_id, stop),
                daemon=True,
                name=f"heartbeat-{trial_id}",
            ).start()
        return TrialSpec(trial_id=trial_id, values=values, epochs=self.max_epochs)

    def _heartbeat(self, internal_id: int, stop: threading.Event) -> None:
        while True:
            self.storage.record_heartbeat(internal_id)
            if stop.wait(HEARTBEAT_S):
                return

    def should_prune(self, spec: TrialSpec, epoch: int, val_accuracy: float) -> bool:
        trial = self._running[spec.trial_id]
        trial.report(val_accuracy, step=epoch)
        return bool(trial.should_prune())

    def _tell(self, number: int, outcome: TrialOutcome) -> None:
        import optuna

        state = {
            "completed": optuna.trial.TrialState.COMPLETE,
            "pruned": optuna.trial.TrialState.PRUNED,
            "failed": optuna.trial.TrialState.FAIL,
        }[outcome.status]
        value = outcome.val_accuracy if outcome.status == "completed" else None
        if state == optuna.trial.TrialState.COMPLETE and value is None:
            state = optuna.trial.TrialState.FAIL
        self.study.tell(number, value, state=state)

    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        trial = self._running.pop(spec.trial_id)
        stop = self._beats.pop(spec.trial_id, None)
        if stop is not None:
            stop.set()
        self._tell(trial.number, outcome)

    def schedule(self, n_trials: int) -> list[TrialSpec]:
        return [TrialSpec(f"{i}", {}, self.max_epochs) for i in range(n_trials)]

    def describe(self, n_trials: int) -> list[str]:
        return [
            f"Optuna TPE + Hyperband pruner: {n_trials} trials of up to {self.max_epochs} "
            f"epochs ({n_trials * self.max_epochs} epochs at most; pruned trials stop early)"
        ]


def make_engine(name: str, space: Space, settings: EngineSettings) -> SearchEngine:
    if name == "optuna":
        return OptunaEngine(space, settings)
    return KerasTunerEngine(name, space, settings)
