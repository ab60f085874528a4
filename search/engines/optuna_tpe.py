"""Optuna's TPE sampler with its Hyperband pruner, on a journal file or a database; or, with
``--objective accuracy,params``, a true multi-objective study (TPE over validation accuracy and
parameter count, no pruner)."""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from search import interrupt
from search.engines.base import EngineSettings, SearchEngine, TrialOutcome, TrialSpec
from search.space import Space, suggest_optuna
from search.storage import StorageError, mask_url

HEARTBEAT_S = 20  # Optuna database heartbeat; a trial silent for 3x this is stale


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


CLAIM_S = 60  # a trial is claimed by its process within milliseconds of being asked


def _journal(path: Path) -> Any:
    """Optuna's journal file backend at ``path``, whose appends a Ctrl-C or SIGTERM cannot
    cut: the signal waits for the end of the append. Cut inside the lock file's release,
    Optuna's cleanup unlinks the file a second time and a ``FileNotFoundError`` replaces the
    clean stop (exit 1 and a traceback instead of 143)."""
    from optuna.storages.journal import JournalFileBackend

    class WholeAppends(JournalFileBackend):
        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            with interrupt.deferred():
                super().append_logs(logs)

    return WholeAppends(str(path))


def _unclaimed(trial: Any) -> bool:
    """Whether a running trial's process died between asking for it and claiming it."""
    started = trial.datetime_start
    return (
        "pid" not in trial.user_attrs
        and started is not None
        and (datetime.datetime.now() - started).total_seconds() > CLAIM_S
    )


def _dead(trial: Any) -> bool:
    """Whether a running trial's process (on this host) is gone."""
    from search.storage import process_alive

    host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
    return _unclaimed(trial) or not process_alive(host, pid)


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

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # the stale-trial helpers we rely on are marked experimental: no warning per trial
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
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
            self.storage = JournalStorage(_journal(Path(settings.state_dir) / "optuna.journal"))
        # Two objectives: Optuna's pruners compare one intermediate value, and a trial's size
        # is known before it trains, so nothing can tell early that it will be dominated;
        # every trial trains its full --max-epochs and TPE learns the front from them.
        self.multi = settings.objective == "accuracy,params"
        self.study = optuna.create_study(
            study_name=settings.study_name,
            storage=self.storage,
            directions=["maximize", "minimize"] if self.multi else ["maximize"],
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=settings.seed),
            pruner=optuna.pruners.NopPruner()
            if self.multi
            else optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=settings.max_epochs, reduction_factor=settings.factor
            ),
        )
        self._running: dict[str, Any] = {}
        self._beats: dict[str, threading.Event] = {}

    def _settle(self, recorded: dict[str, TrialOutcome]) -> None:
        """Tell trials that were recorded but never told; fail and requeue dead ones."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:
            trial_id = f"{t.number:04d}"
            if trial_id in self._running:
                continue  # ours, in progress
            if trial_id in recorded:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._tell(t.number, recorded[trial_id])
            elif not isinstance(self.storage, optuna.storages.RDBStorage) and _dead(t):
                with contextlib.suppress(RuntimeError, ValueError):
                    self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                    self.study.enqueue_trial(
                        t.params,
                        user_attrs={
                            "retry_of": trial_id,
                            "seed_of": t.user_attrs.get("seed_of", trial_id),
                        },
                        skip_if_exists=False,
                    )
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
        values = suggest_optuna(trial, self.space)
        # Claimed after its values are drawn: a trial that names its process has all of
        # them, so a retry after that process dies repeats the trial as it was.
        trial.set_user_attr("host", this_host())
        trial.set_user_attr("pid", os.getpid())
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
        retry_of = trial.user_attrs.get("retry_of")
        if retry_of is None:  # a database's retry (RetryFailedTrialCallback) names its trial
            from optuna.storages import RetryFailedTrialCallback

            frozen = self.storage.get_trial(trial._trial_id)
            number = RetryFailedTrialCallback.retried_trial_number(frozen)
            retry_of = f"{number:04d}" if number is not None else None
        seed_of = trial.user_attrs.get("seed_of", retry_of)
        if seed_of is not None:
            trial.set_user_attr("seed_of", seed_of)  # a retry of this retry keeps the seed
        return TrialSpec(
            trial_id=trial_id,
            values=values,
            epochs=self.max_epochs,
            retry_of=retry_of,
            seed_of=seed_of,
        )

    def _heartbeat(self, internal_id: int, stop: threading.Event) -> None:
        while True:
            self.storage.record_heartbeat(internal_id)
            if stop.wait(HEARTBEAT_S):
                return

    def should_prune(self, spec: TrialSpec, epoch: int, val_accuracy: float) -> bool:
        if self.multi:  # Optuna refuses report() in a multi-objective study
            return False
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
        values: Any = value
        if self.multi:
            values = None if value is None or not outcome.params else [value, outcome.params]
        if state == optuna.trial.TrialState.COMPLETE and values is None:
            state = optuna.trial.TrialState.FAIL
        if state != optuna.trial.TrialState.COMPLETE:
            values = None  # Optuna takes values of complete trials only
        self.study.tell(number, values, state=state)

    def finish(self, spec: TrialSpec, outcome: TrialOutcome) -> None:
        trial = self._running.pop(spec.trial_id)
        stop = self._beats.pop(spec.trial_id, None)
        if stop is not None:
            stop.set()
        self._tell(trial.number, outcome)

    def schedule(self, n_trials: int) -> list[TrialSpec]:
        return [TrialSpec(f"{i}", {}, self.max_epochs) for i in range(n_trials)]

    def describe(self, n_trials: int) -> list[str]:
        if self.multi:
            return [
                f"Optuna multi-objective TPE (validation accuracy up, parameters down), no "
                f"pruner: {n_trials} trials of {self.max_epochs} epochs"
            ]
        return [
            f"Optuna TPE + Hyperband pruner: {n_trials} trials of up to {self.max_epochs} "
            f"epochs ({n_trials * self.max_epochs} epochs at most; pruned trials stop early)"
        ]
