"""The search loop: ask the engine for a trial, train it, record it, tell the engine; until the
search has ``--trials`` trials, the time budget is spent, the engine has nothing more to try, or
too many trials in a row failed.

Every ended trial is in the results table before the engine hears of it, so a loop killed at
any moment resumes without losing or repeating a finished trial: a trial the table holds but
the engine still hands out is replayed to the engine, not trained again. The loop knows its
collaborators only by their interfaces (``SearchEngine``, ``Runner``), so it is tested with
fakes in milliseconds (``tests/test_loop.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

from search import results as res
from search.engines import WAIT, SearchEngine, TrialOutcome, TrialSpec
from search.rundir import format_seconds


class Runner(Protocol):
    """Trains one trial and records its row (``search.trial.runner.TrialRunner``)."""

    def run(self, spec: TrialSpec, engine: SearchEngine | None) -> TrialOutcome: ...


class Stop(Enum):
    """Why the loop ended."""

    DONE = "done"  # --trials trials are recorded
    BUDGET = "budget"  # the next trial would not fit in --time-budget
    EXHAUSTED = "exhausted"  # the engine has nothing more to try
    FAILURES = "failures"  # --max-failures trials in a row failed


@dataclass
class Budget:
    """``--time-budget``: whether the next step fits in what is left (None: no budget)."""

    seconds: float | None
    say: Callable[[str], None]
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def fits(self, need: float, what: str, *, after: str = "") -> bool:
        """True when ``what`` (``need`` seconds) can finish in time; else say so."""
        if self.seconds is None:
            return True
        left = self.seconds - self.elapsed()
        if need <= left:
            return True
        self.say(
            f"time budget {format_seconds(self.seconds)}: {what} needs ~{format_seconds(need)} "
            f"and {format_seconds(max(left, 0))} are left; stopping{after} (rerun with a larger "
            "--time-budget to continue)."
        )
        return False


def recorded_outcomes(run_dir: Path) -> dict[str, TrialOutcome]:
    """Every trial of the results table as the engine learns it (the baseline included)."""
    trials = res.load_trials(run_dir)
    history = res.load_history(run_dir)
    acc = history[history["metric"] == "val_accuracy"]
    out = {}
    for row in trials.itertuples():
        h = acc[acc["trial_id"] == row.trial_id]
        out[str(row.trial_id)] = TrialOutcome(
            status=str(row.status),
            val_accuracy=None if res.missing(row.val_accuracy) else float(row.val_accuracy),
            per_epoch=[(int(e), float(v)) for e, v in zip(h["epoch"], h["value"], strict=True)],
            error=None if res.missing(row.error) else str(row.error),
            params=None if res.missing(row.params) else int(row.params),
        )
    return out


@dataclass
class SearchLoop:
    run_dir: Path
    engine: SearchEngine
    runner: Runner
    budget: Budget
    say: Callable[[str], None]
    trials: int
    max_failures: int
    trial_seconds: Callable[[int], float]  # estimated seconds of a trial of N epochs
    reserve_seconds: Callable[[], float] = lambda: 0.0  # time kept for what follows
    after_trial: Callable[[], None] = lambda: None  # e.g. prune checkpoints (the chief)
    poll_seconds: float = 2.0
    sleep: Callable[[float], None] = time.sleep
    last_error: str | None = field(default=None, init=False)

    def run(self) -> Stop:
        """Train trials until the search has ``trials`` of them, or says why not."""
        plan = self.engine.schedule(self.trials)
        failures = 0
        while True:
            # One process at a time decides on the next trial, so that several processes
            # on one search (Optuna) run exactly --trials trials between them.
            with res.locked_results(self.run_dir):
                recorded = recorded_outcomes(self.run_dir)
                done = len([t for t in recorded if t != res.BASELINE_ID])
                if done >= self.trials:
                    return Stop.DONE
                spec: TrialSpec = WAIT
                if done + self.engine.in_flight(recorded) < self.trials:
                    step = plan[done]
                    need = self.trial_seconds(step.epochs - step.initial_epoch)
                    # keep time for what follows (the confirmation: without it, no verdict)
                    need += self.reserve_seconds()
                    after = f" after {done} of {self.trials} trials"
                    if not self.budget.fits(need, "the next trial", after=after):
                        return Stop.BUDGET
                    asked = self.engine.next_trial()
                    if asked is None:
                        self.say(
                            f"the {self.engine.name} engine has no more trials to try after "
                            f"{done} (search space exhausted, or its last trials run in other "
                            "workers)"
                        )
                        return Stop.EXHAUSTED
                    spec = asked
            if spec is WAIT:  # the last trials run in other processes: wait for them
                self.sleep(self.poll_seconds)
                continue
            if spec.trial_id in recorded:  # ended before the engine heard of it: replay
                self.engine.finish(spec, recorded[spec.trial_id])
                continue
            outcome = self.runner.run(spec, engine=self.engine)
            failures = failures + 1 if outcome.status == "failed" else 0
            self.after_trial()
            if failures >= self.max_failures:
                self.last_error = outcome.error
                return Stop.FAILURES

    def serve(self, on_change: Callable[[int], None]) -> None:
        """A Keras Tuner chief that serves its oracle: wait until the worker processes have
        recorded every trial; ``on_change`` sees the count each time it grows."""
        seen = -1
        while True:
            n = len(res.search_trials(res.load_trials(self.run_dir)))
            if n != seen:
                seen = n
                on_change(n)
                self.after_trial()
            if seen >= self.trials and self.engine.ongoing() == 0:
                return
            self.sleep(self.poll_seconds)
