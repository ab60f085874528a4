"""One search, start to end: plan, baseline, trials, results, checkpoints, export.

Every ended trial is written to the results table before the engine hears of it, so a search
killed at any moment resumes without losing or repeating a finished trial.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from data_pipeline.default_data import fetch_default, is_default
from data_pipeline.discover import SPLITS
from data_pipeline.pipeline import PreparedData, prepare
from data_pipeline.progress import progress_bars
from models.alexnet import build_alexnet
from search import results as res
from search import rundir
from search.confirm import (
    best_runs,
    candidate_name,
    candidates,
    evidence,
    finished_runs,
    load_confirm,
    run_id,
    unconfirmed,
)
from search.engines import (
    WAIT,
    EngineSettings,
    KerasTunerEngine,
    OptunaEngine,
    SearchEngine,
    TrialOutcome,
    TrialSpec,
    make_engine,
)
from search.hardware import advice, nvidia_gpus
from search.options import SearchOptions
from search.quiet import import_tensorflow_quietly
from search.rundir import format_seconds
from search.space import Space, baseline_values, describe, load_space, resolve, to_dict
from search.stats import format_accuracy
from search.storage import resolve_storage
from search.trials import Estimator, TrialRunner
from search.workers import WorkerClient


class SearchFailed(RuntimeError):
    """The search cannot go on (the model cannot be trained at all): exit code 1."""


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in (
        "tensorflow",
        "tensorflow-cpu",
        "keras",
        "keras-tuner",
        "optuna",
        "pandas",
        "plotly",
        "numpy",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _worker_setup(opts: SearchOptions, run_dir: Path) -> dict[str, Any]:
    return {
        "data": opts.data_config().to_dict(),
        "batch_size": opts.batch_size,
        "augment": opts.augment,
        "precision": opts.precision,
        "xla": opts.xla,
        "strategy": opts.strategy,
        "run_dir": str(run_dir.resolve()),
    }


class Search:
    def __init__(self, opts: SearchOptions, argv: list[str], console: Console) -> None:
        self.opts = opts
        self.argv = argv
        self.console = console
        self.run_dir = opts.resolved_run_dir()
        self.space: Space = load_space(opts.space)

    # ----------------------------------------------------------------------------- plan
    def _prepare_data(self) -> PreparedData:
        config = self.opts.data_config()
        if is_default(config.data_dir) and not config.data_dir.exists():
            self.console.print(
                f"no --data-dir and no ./data: fetching the default data set (Microsoft's Cats "
                f"and Dogs, 786 MiB, SHA-256 checked) into {config.data_dir.parent}, once",
                markup=False,
                highlight=False,
            )
            import_tensorflow_quietly(enabled=not self.opts.debug)  # get_file loads Keras
            fetch_default()
        with progress_bars(enabled=self.console.is_terminal) as bars:
            data = prepare(config, progress=bars)
        # TensorFlow loads next (engines, the plan's model): quietly, and only now, so that a
        # mistake in the data is reported without waiting for it
        import_tensorflow_quietly(enabled=not self.opts.debug)
        return data

    def _plan_lines(
        self,
        data: PreparedData,
        engine: SearchEngine,
        warm: dict[str, Any],
        est: Estimator,
        done: int,
    ) -> list[str]:
        o = self.opts
        counts = data.counts()
        n_train, n_val, n_test = (data.split_size(s) for s in SPLITS)
        per_class = "; ".join(
            f"{s}: " + ", ".join(f"{c} {n:,}" for c, n in sorted(v.items()))
            for s, v in counts.items()
        )
        blog = build_alexnet(self._params(baseline_values(self.space), data))
        plan = engine.schedule(o.trials)
        search_epochs = sum(s.epochs - s.initial_epoch for s in plan[done:])
        baseline_epochs = o.max_epochs if o.baseline and not self._baseline_done() else 0
        runs_left = self._confirm_runs_left()
        confirm_epochs = runs_left * o.max_epochs
        eta = (
            est.trial_s(0) * (o.trials - done + runs_left)
            + (search_epochs + baseline_epochs + confirm_epochs) * est.epoch_s()
        )
        lines = [
            f"run directory: {self.run_dir}",
            f"data: {data.config.data_dir} ({data.discovery.layout} layout) - {n_train:,} train, "
            f"{n_val:,} validation (chooses), {n_test:,} test (judges, read only after the "
            f"search) ({per_class}); {data.skipped_summary()}",
            *[f"  note: {note}" for note in data.discovery.notes],
            f"images: {o.image_size}px, batch {o.batch_size}, width x{o.width:g}, "
            f"augment {'on' if o.augment else 'off'}, seed {o.seed}",
            "search space:",
            *[f"  {line}" for line in describe(self.space)],
            *engine.describe(o.trials),
            f"baseline (the blog's AlexNet): {blog.count_params():,} parameters, "
            f"{o.max_epochs} epochs" + ("" if o.baseline else " - skipped (--no-baseline)"),
            f"device: {warm.get('policy')} precision, XLA {'on' if warm.get('xla') else 'off'}; "
            f"warm-up {warm['train_img_s']:.0f} img/s training, {warm['eval_img_s']:.0f} img/s "
            f"evaluation -> ~{format_seconds(est.epoch_s())} per epoch",
            *(
                [
                    f"strategy: MirroredStrategy over {warm.get('replicas')} replica(s); batch "
                    f"{o.batch_size} per replica = global batch {warm.get('global_batch')}"
                ]
                if o.strategy == "mirrored"
                else []
            ),
            *(
                [
                    f"preset {o.preset}: --subset {o.subset} --image-size {o.image_size} "
                    f"--width {o.width:g} (what the command line set wins)"
                ]
                if o.preset
                else []
            ),
            self._confirm_plan_line(runs_left),
            *advice(
                tf_gpus=int(warm.get("gpus", 0)),
                driver_gpus=nvidia_gpus(),
                eta_s=eta,
                preset=o.preset,
            ),
            f"to run: {o.trials - done} trials ({done} done), {search_epochs + baseline_epochs} "
            f"epochs + {confirm_epochs} confirmation epochs, ETA {format_seconds(eta)}"
            + (f" (time budget {format_seconds(o.time_budget)})" if o.time_budget else ""),
        ]
        del blog
        return lines

    def _confirm_runs_total(self) -> int:
        o = self.opts
        return o.confirm * (o.confirm_top + (1 if o.baseline else 0)) if o.role == "chief" else 0

    def _confirm_runs_left(self) -> int:
        return max(0, self._confirm_runs_total() - len(finished_runs(load_confirm(self.run_dir))))

    def _confirm_plan_line(self, runs_left: int) -> str:
        o = self.opts
        if o.confirm == 0:
            return (
                "confirmation: off (--confirm 0): the comparison with the baseline will be "
                "unconfirmed and selection-biased (validation chose and scored the winner)"
            )
        who = f"the top {o.confirm_top}" if o.confirm_top > 1 else "the best"
        base = " and the baseline" if o.baseline else ""
        return (
            f"confirmation: {who} configuration{base}, {o.confirm} new seeds each, "
            f"{o.max_epochs} epochs, scored once on test ({runs_left} of "
            f"{self._confirm_runs_total()} runs to go)"
        )

    def _params(self, values: dict[str, Any], data: PreparedData):
        return resolve(
            values,
            image_size=self.opts.image_size,
            width=self.opts.width,
            num_classes=len(data.classes),
        )

    def _baseline_done(self) -> bool:
        trials = res.load_trials(self.run_dir)
        return bool((trials["trial_id"] == res.BASELINE_ID).any())

    # ------------------------------------------------------------------------------ run
    def run(self) -> int:
        o = self.opts
        if o.dry_run:
            return self._dry_run()
        chief = o.role == "chief"
        if not chief and not (self.run_dir / "config.json").exists():
            raise rundir.RunDirError(
                f"run directory {str(self.run_dir)!r} has no search yet: start its chief (the "
                "same command without --role worker) first."
            )
        with rundir.locked(self.run_dir) if chief else contextlib.nullcontext():
            resumed = rundir.check_identity(self.run_dir, o.identity())
            data = self._prepare_data()
            if chief:
                data.write_reject_manifest(self.run_dir / "rejects.json")
                self._write_config(data, resumed)
            engine = make_engine(o.engine, self.space, self._engine_settings(self.run_dir))
            if isinstance(engine, OptunaEngine):
                with res.locked_results(self.run_dir):
                    engine.resume(self._recorded_outcomes())
            status = rundir.Status(self.run_dir, o.trials, write=chief)
            log = "worker.log" if chief else f"worker-{os.getpid()}.log"
            worker = WorkerClient(
                _worker_setup(o, self.run_dir),
                self.run_dir / "logs" / log,
                trials_per_worker=o.trials_per_worker,
            )
            try:
                return self._loop(data, engine, worker, status, resumed)
            except KeyboardInterrupt:
                status.update(state="interrupted")
                self.console.print(
                    f"interrupted; every finished trial is saved in "
                    f"{self.run_dir}. Rerun the same command to continue."
                )
                return 130
            except BaseException:
                status.update(state="failed")
                raise
            finally:
                worker.close()
                if isinstance(engine, KerasTunerEngine):
                    engine.close()  # stop serving the oracle, if this chief did
                self._write_report()

    def _engine_settings(self, state_dir: Path) -> EngineSettings:
        o = self.opts
        chief = o.role == "chief"
        return EngineSettings(
            state_dir=state_dir,
            max_epochs=o.max_epochs,
            factor=o.factor,
            n_trials=o.trials,
            seed=o.seed,
            storage_url=resolve_storage(o.storage),
            study_name=o.study,
            role=o.role,
            oracle_address=o.oracle,
            tuner_id=os.environ.get("KERASTUNER_TUNER_ID")
            or ("chief" if chief else f"worker-{socket.gethostname()}-{os.getpid()}"),
        )

    def _dry_run(self) -> int:
        data = self._prepare_data()
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(
                self.opts.engine,
                self.space,
                replace(
                    self._engine_settings(Path(tmp)),
                    role="chief",
                    oracle_address=None,
                    storage_url=None,
                ),
            )
            worker = WorkerClient(_worker_setup(self.opts, Path(tmp)), Path(tmp) / "worker.log")
            try:
                warm = self._warmup(worker, data)
            finally:
                worker.close()
            est = Estimator(self._epoch_s(warm, data))
            for line in self._plan_lines(data, engine, warm, est, 0):
                self.console.print(line, markup=False, highlight=False)
        self.console.print("dry run: nothing was trained.")
        return 0

    def _warmup(self, worker: WorkerClient, data: PreparedData) -> dict[str, Any]:
        warm = worker.warmup(self._params(baseline_values(self.space), data).to_dict())
        if warm.get("event") != "warmup":
            raise SearchFailed(
                f"the warm-up (training the baseline model on one batch) "
                f"failed: {warm.get('error')}"
            )
        return {**warm, **worker.info}

    def _epoch_s(self, warm: dict[str, Any], data: PreparedData) -> float:
        n_train, n_val = data.split_size("train"), data.split_size("validation")
        return n_train / warm["train_img_s"] + n_val / warm["eval_img_s"]

    def _write_config(self, data: PreparedData, resumed: bool) -> None:
        if resumed:
            return
        rundir.write_json_atomic(
            self.run_dir / "config.json",
            {
                "identity": self.opts.identity(),
                "options": self.opts.to_dict(),
                "space": to_dict(self.space),
                "baseline": baseline_values(self.space),
                "seed": self.opts.seed,
                "data_config": self.opts.data_config().to_dict(),
                "classes": list(data.classes),
                "data": {
                    "layout": data.discovery.layout,
                    "counts": data.counts(),
                    "skipped": len(data.cached.rejects),
                    "cache": str(data.cache_dir),
                },
                "versions": library_versions(),
                "command": "python -m search.run " + shlex.join(self.argv),
                "created_at": rundir.now_iso(),
            },
        )

    def _recorded_outcomes(self) -> dict[str, TrialOutcome]:
        trials = res.load_trials(self.run_dir)
        history = res.load_history(self.run_dir)
        out = {}
        for row in trials.itertuples():
            h = history[
                (history["trial_id"] == row.trial_id) & (history["metric"] == "val_accuracy")
            ]
            out[str(row.trial_id)] = TrialOutcome(
                status=str(row.status),
                val_accuracy=None if _isnan(row.val_accuracy) else float(row.val_accuracy),
                per_epoch=[(int(e), float(v)) for e, v in zip(h["epoch"], h["value"], strict=True)],
                error=None if _isnan(row.error) else str(row.error),
            )
        return out

    def _loop(
        self,
        data: PreparedData,
        engine: SearchEngine,
        worker: WorkerClient,
        status: rundir.Status,
        resumed: bool,
    ) -> int:
        o = self.opts
        warm = self._warmup(worker, data)
        est = Estimator(self._epoch_s(warm, data))
        done = len(res.search_trials(res.load_trials(self.run_dir)))
        if resumed:
            self.console.print(f"resuming: {done} of {o.trials} trials already done")
        for line in self._plan_lines(data, engine, warm, est, done):
            self.console.print(line, markup=False, highlight=False)
        started = time.monotonic()
        plan = engine.schedule(o.trials)
        total_epochs = (
            sum(s.epochs - s.initial_epoch for s in plan)
            + (o.max_epochs if o.baseline else 0)
            + self._confirm_runs_total() * o.max_epochs
        )
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=self.console,
            transient=False,
        )
        done_epochs = (
            sum(s.epochs - s.initial_epoch for s in plan[:done])
            + (o.max_epochs if self._baseline_done() else 0)
            + (self._confirm_runs_total() - self._confirm_runs_left()) * o.max_epochs
        )
        with progress:
            overall = progress.add_task(
                "epochs (search + confirmation)",
                total=total_epochs,
                completed=done_epochs,
                note=self._note(),
            )
            runner = TrialRunner(
                self.run_dir,
                o,
                lambda values: self._params(values, data),
                worker,
                status,
                progress,
                overall,
                est,
                n_validation=data.split_size("validation"),
            )
            if o.role == "chief" and o.baseline and not self._baseline_done():
                if self._over_budget(est.trial_s(o.max_epochs), started, "the baseline", done):
                    return self._finish(data, status, started)
                runner.run(
                    TrialSpec(res.BASELINE_ID, baseline_values(self.space), o.max_epochs),
                    engine=None,
                )
            if isinstance(engine, KerasTunerEngine) and engine.serving:
                self._serve_workers(engine, status, progress, overall)
            else:
                code = self._run_trials(engine, runner, plan, est, started, status)
                if code is not None:
                    return code
            progress.update(overall, note=self._note())
            if o.role == "chief" and o.confirm and self._search_complete():
                self._confirm(data, runner, started)
        worker.close()
        if o.role == "worker":
            self.console.print(
                f"worker done: the search has its {o.trials} trials; its chief "
                "exports the best model and writes the report."
            )
            return 0
        return self._finish(data, status, started)

    def _search_complete(self) -> bool:
        return len(res.search_trials(res.load_trials(self.run_dir))) >= self.opts.trials

    def _confirm(self, data: PreparedData, runner: TrialRunner, started: float) -> None:
        """Train the candidates again with new seeds and score them once on test.

        Seed-major order (every candidate's seed 1, then seed 2, ...): a run stopped by the time
        budget still has complete pairs of seeds to compare.
        """
        o = self.opts
        trials = res.load_trials(self.run_dir)
        cands = candidates(
            trials, top=o.confirm_top, baseline=baseline_values(self.space) if o.baseline else None
        )
        if not any(not c.is_baseline for c in cands):
            self.console.print("confirmation: no search trial has a score to confirm.")
            return
        n_test = data.split_size("test")
        self.console.print(
            "confirmation: "
            + ", ".join(f"{candidate_name(cands, c)} (trial {c.trial_id})" for c in cands)
            + f"; {o.confirm} seeds each, {o.max_epochs} epochs, then {n_test:,} test images",
            markup=False,
            highlight=False,
        )
        for index in range(o.confirm):
            for cand in cands:
                done = finished_runs(load_confirm(self.run_dir))
                if run_id(cand, index) in done:
                    continue
                need = runner.est.trial_s(o.max_epochs)
                if self._over_budget(need, started, "the next confirmation run", None):
                    return
                runner.confirm(cand, candidate_name(cands, cand), index, n_test=n_test)
                self._prune_confirm_checkpoints()

    def _prune_confirm_checkpoints(self) -> None:
        """Keep the checkpoint of each candidate's best validation run (the export comes from
        the winner's); the baseline's and every other run's weights are not needed."""
        table = load_confirm(self.run_dir)
        keep = set(best_runs(table)["run_id"].astype(str))
        rundir.prune_checkpoints(self.run_dir, keep, set(table["run_id"].astype(str)))

    def _run_trials(
        self,
        engine: SearchEngine,
        runner: TrialRunner,
        plan: list[TrialSpec],
        est: Estimator,
        started: float,
        status: rundir.Status,
    ) -> int | None:
        """Train trials until the search has --trials of them; an exit code to stop early."""
        o = self.opts
        failures = 0
        while True:
            # One process at a time decides on the next trial, so that several processes
            # on one search (Optuna) run exactly --trials trials between them.
            with res.locked_results(self.run_dir):
                recorded_all = self._recorded_outcomes()
                done = len([t for t in recorded_all if t != res.BASELINE_ID])
                if done >= o.trials:
                    return None
                spec = WAIT
                if done + engine.in_flight(recorded_all) < o.trials:
                    # keep time for the confirmation: a search without it has no verdict
                    need = est.trial_s(
                        plan[done].epochs - plan[done].initial_epoch
                    ) + self._confirm_runs_left() * est.trial_s(o.max_epochs)
                    if self._over_budget(need, started, "the next trial", done):
                        return None
                    asked = engine.next_trial()
                    if asked is None:
                        self.console.print(
                            f"the {engine.name} engine has no more trials to try "
                            f"after {done} (search space exhausted, or its last trials run "
                            "in other workers)"
                        )
                        return None
                    spec = asked
            if spec is WAIT:  # the last trials run in other processes: wait for them
                time.sleep(2.0)
                continue
            recorded = recorded_all.get(spec.trial_id)
            if recorded is not None:  # ended before the engine heard of it: replay
                engine.finish(spec, recorded)
                continue
            outcome = runner.run(spec, engine=engine)
            failures = failures + 1 if outcome.status == "failed" else 0
            if o.role == "chief":  # only the chief knows what every process still needs
                self._prune_checkpoints(engine, status)
            if failures >= o.max_failures:
                status.update(state="failed")
                self.console.print(
                    f"stopping: {failures} consecutive trials failed; last error: "
                    f"{outcome.error}. Results so far are in {self.run_dir}; worker log: "
                    f"{self.run_dir / 'logs' / 'worker.log'}."
                )
                return 1

    def _serve_workers(
        self, engine: KerasTunerEngine, status: rundir.Status, progress: Progress, overall: TaskID
    ) -> None:
        """Keras Tuner chief: serve the oracle until the workers have recorded every trial."""
        o = self.opts
        self.console.print(
            f"serving Keras Tuner's oracle on {o.oracle}; start workers with the same options "
            f"and --role worker --oracle {o.oracle} (python -m search.launch starts both)"
        )
        seen = -1
        try:
            while True:
                trials = res.search_trials(res.load_trials(self.run_dir))
                if len(trials) != seen:
                    seen = len(trials)
                    trained = int((trials["epochs"] - trials["initial_epoch"]).sum())
                    base = o.max_epochs if self._baseline_done() else 0
                    progress.update(overall, completed=trained + base, note=self._note())
                    self._prune_checkpoints(engine, status)
                if seen >= o.trials and engine.ongoing() == 0:
                    return
                time.sleep(2.0)
        finally:
            engine.close()

    def _over_budget(self, need: float, started: float, what: str, done: int | None) -> bool:
        """True (and says so) when ``what`` cannot finish within --time-budget."""
        budget = self.opts.time_budget
        if budget is None:
            return False
        left = budget - (time.monotonic() - started)
        if need <= left:
            return False
        self.console.print(
            f"time budget {format_seconds(budget)}: {what} needs ~{format_seconds(need)} and "
            f"{format_seconds(max(left, 0))} are left; stopping"
            + (f" after {done} of {self.opts.trials} trials" if done is not None else "")
            + " (rerun with a larger --time-budget to continue)."
        )
        return True

    def _write_report(self) -> None:
        """The HTML report, whatever the outcome; a report error never costs results."""
        if self.opts.role != "chief":
            return
        from reports.writer import index_path, write_report

        try:
            path = write_report(self.run_dir)
        except Exception as exc:  # the results are safe on disk; say so and go on
            self.console.print(
                f"warning: the report could not be written ({exc}); rebuild it "
                f"with python -m reports.build {self.run_dir}"
            )
            return
        self.console.print(f"report: {path} (index: {index_path(self.run_dir.parent)})")

    def _note(self) -> str:
        return res.progress_note(res.load_trials(self.run_dir))

    def _prune_checkpoints(self, engine: SearchEngine, status: rundir.Status) -> None:
        trials = res.load_trials(self.run_dir)
        best = res.best_trial(trials)
        keep = engine.needed_checkpoints() | (
            {str(best["trial_id"])} if best is not None else set()
        )
        rundir.prune_checkpoints(self.run_dir, keep, set(trials["trial_id"].astype(str)))
        status.update(disk_mb=rundir.disk_usage_mb(self.run_dir))

    def _finish(self, data: PreparedData, status: rundir.Status, started: float) -> int:
        trials = res.load_trials(self.run_dir)
        best = res.best_trial(trials)
        base = res.baseline_score(trials)
        rundir.prune_checkpoints(
            self.run_dir,
            {str(best["trial_id"])} if best is not None else set(),
            set(trials["trial_id"].astype(str)),
        )
        n = len(res.search_trials(trials))
        counts = res.search_trials(trials)["status"].value_counts().to_dict()
        self.console.print(f"trials: {n} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
        code = 0
        if best is None:
            self.console.print("no trial completed: nothing to export.")
            status.update(state="finished")
            return 1
        n_val = data.split_size("validation")
        gain = (
            f"; baseline {format_accuracy(base, n_val)}, "
            f"{100 * (best['val_accuracy'] - base):+.2f} points"
            if base is not None
            else ""
        )
        self.console.print(
            f"best search trial {best['trial_id']}: validation "
            f"{format_accuracy(float(best['val_accuracy']), n_val)}{gain} (selected on "
            "validation, so optimistic)",
            markup=False,
            highlight=False,
        )
        self.console.print("exporting the best model and checking it in a fresh process ...")
        export = subprocess.run(
            [sys.executable, "-m", "search.export", "--locked", str(self.run_dir)],
            check=False,
            capture_output=True,
            text=True,
        )
        self.console.print(export.stdout.strip(), markup=False, highlight=False)
        if export.returncode != 0 or self.opts.debug:
            sys.stderr.write(export.stderr[-4000:])
        if export.returncode != 0:
            self.console.print("export check failed; see above. Results are kept.")
            code = 1
        summary = self._write_summary(data)
        status.update(state="finished", disk_mb=rundir.disk_usage_mb(self.run_dir))
        self.console.print(
            f"done in {format_seconds(time.monotonic() - started)}; results in "
            f"{self.run_dir} (peak disk {status.data['peak_disk_mb']:.0f} MB)"
        )
        self.console.print(summary["sentence"], markup=False, highlight=False)
        exported = summary.get("exported")
        if exported and exported.get("test_accuracy") is not None:
            lo, hi = exported["test_ci95"]
            source = exported.get("run_id") or f"trial {exported['trial_id']}"
            self.console.print(
                f"exported model ({source}): "
                f"test accuracy {exported['test_accuracy']:.4f} (95% CI {lo:.3f}-{hi:.3f}, "
                f"n={summary['test_n']:,})",
                markup=False,
                highlight=False,
            )
        return code

    def _write_summary(self, data: PreparedData) -> dict[str, Any]:
        """``summary.json``: the run's answer, confirmed on test or said to be unconfirmed."""
        _, test_labels = data.cached.split("test")
        export = rundir.read_json(self.run_dir / "export.json")
        table = load_confirm(self.run_dir)
        if self.opts.confirm and len(table):
            summary = evidence(self.run_dir, table, test_labels, export)
        else:
            summary = unconfirmed(res.load_trials(self.run_dir), export, len(test_labels))
        rundir.write_json_atomic(self.run_dir / "summary.json", summary)
        return summary


def _isnan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
