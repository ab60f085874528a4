"""One training at a time: run it in the trial process, show its progress, record its row."""

from __future__ import annotations

import math
import statistics
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import Progress, TaskID

from data_pipeline.files import NoRoom
from models.alexnet import AlexNetParams
from search import results as res
from search import rundir
from search.confirm import (
    JUDGE,
    REFIT,
    REFIT_SPLITS,
    SELECT,
    Candidate,
    ConfirmRow,
    confirm_seed,
    load_confirm,
    predictions_path,
    record_confirm,
    refit_at_chance_hint,
    refit_ending,
    refit_window,
    run_id,
    seed_fold,
    shipped_runs,
    tail_accuracy,
    tail_epochs,
)
from search.engines import SearchEngine, TrialOutcome, TrialSpec
from search.options import SearchOptions
from search.plan import Estimator
from search.rundir import format_seconds
from search.space import DEFAULT_SPACE, PARAM_NAMES, Space, format_searched
from search.stats import at_chance, format_accuracy, format_selected
from search.trial.client import TrialProcessClient
from search.trial.protocol import NO_ROOM, Done, Epoch, Train, failed

# the search's baseline line when it is the judge's first baseline run too
JUDGED_TOO = " (also the judge's baseline seed 1: scored on test, read only by the verdict)"


def trial_seed(seed: int, trial_id: str) -> int:
    return (seed * 7919 + zlib.crc32(trial_id.encode())) % 2**31


def val_curve(history: list[Epoch]) -> list[tuple[int, float]]:
    """(epoch, validation accuracy) of a training's epochs that have one (a refit's do not)."""
    return [(h.epoch, h.metrics["val_accuracy"]) for h in history if "val_accuracy" in h.metrics]


class TrialRunner:
    """Runs one trial in the trial process, shows its progress and records its row."""

    def __init__(
        self,
        run_dir: Path,
        opts: SearchOptions,
        params: Callable[[dict[str, Any]], AlexNetParams],
        process: TrialProcessClient,
        status: rundir.Status,
        progress: Progress,
        overall: TaskID,
        est: Estimator,
        *,
        n_validation: int,
        chance: float = 0.5,
        test_chance: float = 0.5,
        space: Space = DEFAULT_SPACE,
        trainings_left: Callable[[], int] = lambda: 0,
        folds: int = 0,
    ) -> None:
        self.run_dir, self.opts, self.params, self.process = run_dir, opts, params, process
        self.n_validation = n_validation
        self.folds = folds  # selection folds the train images hold (``selection_folds``)
        self.space = space
        self.chance = chance  # the commonest class's share of validation: chance for this data
        self.test_chance = test_chance  # ... of test: what a refit (no validation) is held to
        self.status, self.progress, self.overall, self.est = status, progress, overall, est
        self._training: dict[TaskID, AlexNetParams] = {}  # each bar's configuration
        self.trainings_left = trainings_left  # the one under way included (reads the tables)
        self._left = 0  # trainings_left() when the current training started; read per epoch

    def _train(
        self,
        trial_id: str,
        params: AlexNetParams,
        *,
        epochs: int,
        seed: int,
        initial_epoch: int = 0,
        warm_start: Path | None = None,
        prune: Callable[[int, float], bool] | None = None,
        shuffle_seed: int | None = None,
        test_predictions: Path | None = None,
        refit: bool = False,
        refit_test: bool = False,
        average_last: int = 0,
        validate_from: int = 1,
        fold: int = 0,
    ) -> tuple[Done, list[Epoch]]:
        """Train one model in the trial process with a progress bar: how it ended, its epochs."""
        stop_file = self.run_dir / "trials" / trial_id / "STOP"
        rundir.clear_stop_file(stop_file)
        task = self.progress.add_task(
            f"trial {trial_id}", total=epochs, completed=initial_epoch, note="", eta=""
        )
        self._training[task] = params
        self._left = self.trainings_left()
        self._show_eta(task)
        history: list[Epoch] = []
        # this call's epochs as the chief saw them end: an epoch's seconds are from the end of
        # the one before, its end-of-epoch work (checkpoints, epoch state) included; the first
        # one's from the training's start (the process, the model, its tracing)
        fresh: list[float] = []
        last_end = time.perf_counter()

        def on_epoch(event: Epoch) -> None:
            nonlocal last_end
            history.append(event)
            val = event.metrics.get("val_accuracy", float("nan"))
            note = (
                f"val_accuracy {val:.4f}"
                if "val_accuracy" in event.metrics
                else f"accuracy {event.metrics.get('accuracy', float('nan')):.4f} (training)"
            )
            self.progress.update(task, completed=event.epoch, note=note)
            self.progress.advance(self.overall)
            self._show_eta(task)
            if event.resumed:  # trained before an interruption: counted then
                self.status.update(current_trial=trial_id)
            else:
                now = time.perf_counter()
                fresh.append(now - last_end)
                last_end = now
                if len(fresh) > 1:
                    self.est.add(params, fresh[-1])
                self.status.update(
                    disk_mb=event.disk_mb,
                    current_trial=trial_id,
                    epochs_trained=int(self.status.data.get("epochs_trained", 0)) + 1,
                )
            if prune is not None and math.isfinite(val) and prune(event.epoch, val):
                stop_file.parent.mkdir(parents=True, exist_ok=True)
                stop_file.touch()

        if warm_start is not None and not warm_start.exists():
            done = failed(trial_id, f"checkpoint {warm_start} of its parent is missing")
        else:
            done = self.process.run_trial(
                Train(
                    trial_id=trial_id,
                    params=params,
                    epochs=epochs,
                    initial_epoch=initial_epoch,
                    warm_start=str(warm_start) if warm_start else None,
                    checkpoint=str(rundir.checkpoint_path(self.run_dir, trial_id)),
                    stop_file=str(stop_file),
                    seed=seed,
                    shuffle_seed=shuffle_seed,
                    test_predictions=str(test_predictions) if test_predictions else None,
                    refit=refit,
                    refit_test=refit_test,
                    average_last=average_last,
                    validate_from=validate_from,
                    fold=fold,
                ),
                on_epoch,
            )
        rundir.clear_stop_file(stop_file)
        if done.status == NO_ROOM:  # nothing recorded: the rerun trains this one again
            raise NoRoom(done.error or f"no room to write {self.run_dir}")
        res.record_costs(self.run_dir, trial_id, done.costs)
        if len(fresh) > 1:  # what it cost beyond its steady epochs: the next one's too
            # its first epoch's excess over a steady one (start, tracing), and what followed
            # its last epoch (scoring, the last checkpoint)
            ended = time.perf_counter() - last_end
            self.est.add_training(fresh[0] - statistics.fmean(fresh[1:]) + ended)
        self.progress.remove_task(task)
        del self._training[task]
        self._left = max(0, self._left - 1)
        skipped = epochs - initial_epoch - len(history)
        if skipped > 0:  # pruned or failed early: the plan's epochs will not be trained
            self.progress.advance(self.overall, skipped)
        self._show_eta()
        return done, history

    def eta_s(self, task: TaskID | None = None) -> float:
        """Seconds left for ``task`` (default: the whole run): the epochs of the training
        under way at its configuration's seconds per epoch, the others' at an unknown
        configuration's (``Estimator``), and each training's start. The one estimate the
        bars and the trial lines show."""

        def left(task_id: TaskID) -> float:
            t = next(t for t in self.progress.tasks if t.id == task_id)
            return max(0.0, float(t.total or 0) - t.completed)

        if task is not None:
            return left(task) * self.est.epoch_s(self._training.get(task))
        running = sum(left(t) for t in self._training)
        known = sum(left(t) * self.est.epoch_s(p) for t, p in self._training.items())
        rest = max(0.0, left(self.overall) - running) * self.est.epoch_s()
        return known + rest + self._left * self.est.overhead_s

    def _show_eta(self, task: TaskID | None = None) -> None:
        self.progress.update(self.overall, eta=format_seconds(self.eta_s()))
        if task is not None:
            self.progress.update(task, eta=format_seconds(self.eta_s(task)))

    def run(
        self, spec: TrialSpec, engine: SearchEngine | None, *, judged_on: int | None = None
    ) -> TrialOutcome:
        """One search trial, or the baseline (``engine`` None). ``judged_on``: the number of
        test images when an evidence phase will judge the baseline: the search's baseline is
        then the judge's first baseline run too (its fresh seed 1, its best epoch scored once
        on test and recorded in ``confirm.csv``; nothing in the search reads that score), so
        the blog's configuration is trained K times in all, not K + 1."""
        run_dir = self.run_dir
        params = self.params(spec.values)
        if spec.retry_of:  # the trial it repeats left its last epoch: continue from there
            rundir.adopt_epoch_state(run_dir, spec.retry_of, spec.trial_id)
        judge = Candidate(spec.trial_id, spec.values, None) if judged_on is not None else None
        seed = trial_seed(self.opts.seed, spec.seed_of or spec.trial_id)
        preds = None
        if judge is not None:  # exactly the run the judge stage would train as its seed 1
            seed, preds = confirm_seed(self.opts.seed, 0, JUDGE), self._preds(judge, 0)
        done, history = self._train(
            spec.trial_id,
            params,
            epochs=spec.epochs,
            seed=seed,
            initial_epoch=spec.initial_epoch,
            warm_start=rundir.checkpoint_path(run_dir, spec.parent_id) if spec.parent_id else None,
            prune=(lambda epoch, val: engine.should_prune(spec, epoch, val)) if engine else None,
            shuffle_seed=seed if judge is not None else None,
            test_predictions=preds,
        )
        if judge is not None and judged_on is not None:  # first: a kill before the trial row
            # trains the baseline again, and both rows are then written from that run
            tail = tail_accuracy(val_curve(history), self.opts.max_epochs)
            self._record(done, judge, res.BASELINE_ID, 0, JUDGE, seed, judged_on, preds, tail=tail)
        row = res.TrialRow(
            trial_id=spec.trial_id,
            status=done.status,
            values={k: getattr(params, k) for k in PARAM_NAMES},
            val_accuracy=done.val_accuracy,
            best_epoch=done.best_epoch,
            epochs=done.epochs,
            seconds=round(done.seconds, 3),
            params=done.params,
            error=done.error,
            fit_seconds=round(done.fit_seconds, 3),
            peak_rss_mb=done.peak_rss_mb,
            bracket=spec.bracket,
            round=spec.round,
            parent_id=spec.parent_id,
            initial_epoch=spec.initial_epoch,
            target_epochs=spec.epochs,
            ended_at=rundir.now_iso(),
        )
        res.record_trial(run_dir, row, [(h.epoch, h.metrics) for h in history])
        rundir.epoch_state_path(run_dir, spec.trial_id).unlink(missing_ok=True)  # recorded
        outcome = TrialOutcome(
            status=row.status,
            val_accuracy=row.val_accuracy,
            per_epoch=val_curve(history),
            error=row.error,
            params=row.params or None,
        )
        if engine is not None:
            engine.finish(spec, outcome)
        else:  # the baseline's weights are not needed after its score is recorded
            rundir.checkpoint_path(run_dir, spec.trial_id).unlink(missing_ok=True)
        acc = format_selected(row.val_accuracy, self.n_validation)
        err = f" - {row.error}" if row.error else ""
        trials = res.load_trials(run_dir)  # read once: the note and the count below
        note = res.progress_note(trials)
        self.progress.update(self.overall, note=note)
        n_done = len(res.search_trials(trials))
        self.progress.console.print(
            f"trial {spec.trial_id} {row.status}: val_accuracy {acc}, best epoch "
            f"{row.best_epoch} of {row.epochs}, {format_seconds(row.seconds)}{err}"
            f"{JUDGED_TOO if judge is not None else ''}; "
            f"{format_searched(row.values, self.space)} | {n_done}/{self.opts.trials} trials, "
            f"{note}, ETA {format_seconds(self.eta_s())}",
            markup=False,
            highlight=False,
        )
        return outcome

    def confirm(
        self, cand: Candidate, name: str, index: int, *, n_test: int, stage: str = JUDGE
    ) -> ConfirmRow:
        """One confirmation run: ``cand`` from scratch with seed ``index`` of ``stage``, best
        epoch on validation; a judge run is then scored once on test. Its row is recorded last."""
        seed = confirm_seed(self.opts.seed, index, stage)
        rid = run_id(cand, index, stage)
        preds = self._preds(cand, index) if stage == JUDGE else None
        epochs = self.opts.max_epochs
        # a selection run is scored on its last epochs only (tail_accuracy): the ones before
        # are not validated; a judge run's best epoch is chosen on all its epochs
        validate_from = tail_epochs(epochs).start if stage == SELECT else 1
        # a selection run is validated on a fold of train, not on the images that chose the
        # candidates (seed_fold); a judge run on validation
        fold = seed_fold(load_confirm(self.run_dir), index, self.folds) if stage == SELECT else 0
        done, history = self._train(
            rid,
            self.params(cand.values),
            epochs=epochs,
            seed=seed,
            shuffle_seed=seed,
            test_predictions=preds,
            validate_from=validate_from,
            fold=fold,
        )
        tail = tail_accuracy(val_curve(history), epochs)
        row = self._record(done, cand, name, index, stage, seed, n_test, preds, tail, fold)
        val = format_selected(row.val_accuracy, self.n_validation)
        if validate_from > 1:
            val = f"(epochs {validate_from}-{epochs} only) {val}"
        if tail is not None:
            val += f", last-{len(tail_epochs(epochs))} mean {tail:.4f}"
        where = f"fold {fold} of train" if fold else "validation"
        test = f", test {format_accuracy(row.test_accuracy, n_test)}" if stage == JUDGE else ""
        chance = (
            f"; AT CHANCE (the commonest class is {self.chance:.2f} of validation): this seed "
            "did not learn"
            if row.at_chance
            else ""
        )
        self._say(
            f"{stage} {name} (trial {cand.trial_id}) seed {index + 1}: {row.status}, "
            f"{where} {val}{test}, best epoch {row.best_epoch}, "
            f"{format_seconds(row.seconds)}{chance}{self._err(row)}"
        )
        return row

    def _preds(self, cand: Candidate, index: int) -> Path:
        """Where judge run ``index`` of ``cand`` leaves its test predictions."""
        return predictions_path(self.run_dir, run_id(cand, index, JUDGE))

    def refit(
        self,
        cand: Candidate,
        name: str,
        *,
        epochs: int,
        n_test: int,
        refit: str = "trainval",
        index: int = 0,
        seeds: int = 1,
    ) -> ConfirmRow:
        """Refit seed ``index`` of ``seeds``: the winner trained on train + validation for
        ``epochs``, scored once on test; with ``refit="all"`` on the test images too, whose
        score then only says whether it learned."""
        seed = confirm_seed(self.opts.seed, index, REFIT)
        rid = run_id(cand, index, REFIT, refit)
        on_test = "test" in REFIT_SPLITS[refit]
        preds = predictions_path(self.run_dir, rid)
        window = refit_window(epochs)
        done, _ = self._train(
            rid,
            self.params(cand.values),
            epochs=epochs,
            seed=seed,
            shuffle_seed=seed,
            test_predictions=preds,
            refit=True,
            refit_test=on_test,
            average_last=window,
        )
        row = self._record(
            done,
            cand,
            name,
            index,
            REFIT,
            seed,
            n_test,
            preds,
            averaged=window,
            rid=rid,
            trained_on_test=on_test,
        )
        chance = ""
        if row.fit_at_chance:  # decided on the images it trained on: test chooses nothing
            shipped = shipped_runs(load_confirm(self.run_dir), cand.trial_id, refit, seeds)
            ids = [str(r["run_id"]) for r in shipped]
            if seeds > 1:
                then = "it is not shipped: the refits that learned are, else the best judge run"
            elif ids and row.run_id not in ids:
                then = f"the winner's best judge run ({ids[0]}) is shipped instead"
            else:
                then = "it is shipped as it is: no judge run of the winner learned either"
            chance = (
                f"; DID NOT LEARN: its weights score {row.fit_accuracy:.4f} on the "
                f"{done.fit_n:,} train + validation images they trained on (the commonest "
                f"class is {self.chance:.2f} of validation), so {then}"
            )
        elif row.at_chance:
            chance = (
                f"; AT CHANCE (the commonest class is {self.test_chance:.2f} of test): this "
                f"refit did not learn{' even the images it trained on' if on_test else ''}; "
                f"{refit_at_chance_hint(load_confirm(self.run_dir), cand.trial_id)}"
            )
        scored = (
            "accuracy not measured (every labelled image trained it; its judge runs estimate it)"
            if on_test
            else f"test {format_accuracy(row.test_accuracy, n_test)}"
        )
        self._say(
            f"refit {name}{f' seed {index + 1}/{seeds}' if seeds > 1 else ''} "
            f"(trial {cand.trial_id}) on {' + '.join(REFIT_SPLITS[refit])}, "
            f"{epochs} epoch{'s' if epochs != 1 else ''}, "
            f"{refit_ending(window)}: "
            f"{row.status}, {scored}, "
            f"{format_seconds(row.seconds)}{chance}{self._err(row)}"
        )
        return row

    def _record(
        self,
        done: Done,
        cand: Candidate,
        name: str,
        index: int,
        stage: str,
        seed: int,
        n_test: int,
        preds: Path | None,
        tail: float | None = None,
        fold: int = 0,
        averaged: int | None = None,
        rid: str | None = None,
        trained_on_test: bool = False,
    ) -> ConfirmRow:
        status = done.status
        scored = preds is None or (done.test_accuracy is not None and preds.exists())
        if status == "completed" and not scored:
            status = "failed"
        row = ConfirmRow(
            run_id=rid or run_id(cand, index, stage),
            stage=stage,
            candidate=name,
            trial_id=cand.trial_id,
            seed_index=index + 1,
            seed=seed,
            values=cand.values,
            search_val_accuracy=cand.search_val_accuracy,
            val_accuracy=done.val_accuracy,
            best_epoch=done.best_epoch,
            # a refit has no validation score: its test score (measured anyway) is the
            # flag's, which reports a refit that did not learn and chooses nothing. Other runs
            # are flagged on their last epochs' mean, not on the best of their noisy epochs
            # (a model that learned nothing peaks above chance on some epoch by luck)
            at_chance=at_chance(done.test_accuracy, n_test, self.test_chance)
            if stage == REFIT
            else at_chance(
                tail if tail is not None else done.val_accuracy, self.n_validation, self.chance
            ),
            # --refit all: a score on images it trained on is no accuracy; it only flags a
            # refit that did not learn
            test_accuracy=None if trained_on_test else done.test_accuracy,
            n_validation=self.n_validation,
            n_test=n_test,
            epochs=done.epochs,
            seconds=round(done.seconds, 3),
            peak_rss_mb=done.peak_rss_mb,
            status=status,
            error=done.error,
            ended_at=rundir.now_iso(),
            averaged_epochs=averaged,
            val_tail=tail,
            fit_accuracy=done.fit_accuracy if stage == REFIT else None,
            fit_at_chance=stage == REFIT and at_chance(done.fit_accuracy, done.fit_n, self.chance),
            val_fold=fold if stage == SELECT else None,  # 0: selected on validation
        )
        record_confirm(self.run_dir, row)
        rundir.epoch_state_path(self.run_dir, row.run_id).unlink(missing_ok=True)  # recorded
        return row

    def _say(self, line: str) -> None:
        self.progress.console.print(line, markup=False, highlight=False)

    @staticmethod
    def _err(row: ConfirmRow) -> str:
        return f" - {row.error}" if row.error else ""
