"""One search, start to end, in order: prepare the data, write the run's configuration, plan,
train the baseline, run the search loop, confirm, export, summarise, write the report.

This module only orders the phases and builds their collaborators; each phase is read alone:
the plan in ``search.plan``, the loop in ``search.loop``, one training in
``search.trial.runner``, the finishing steps in ``search.finish``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.table import Column

from data_pipeline.default_data import fetch_default, is_default
from data_pipeline.discover import manifest
from data_pipeline.errors import DataError
from data_pipeline.files import NoRoom
from data_pipeline.pipeline import PreparedData, prepare
from data_pipeline.progress import progress_bars
from models.alexnet import AlexNetParams, build_alexnet
from search import finish, rundir
from search import plan as planning
from search import results as res
from search.engines import EngineSettings, SearchEngine, TrialSpec, make_engine
from search.interrupt import Interrupted
from search.loop import Budget, SearchLoop, Stop, recorded_outcomes
from search.options import SearchOptions
from search.quiet import import_tensorflow_quietly, output_to
from search.rundir import RunConfig, format_seconds
from search.space import Space, baseline_values, load_space, resolve, sample
from search.storage import resolve_storage
from search.trial.client import TrialProcessClient
from search.trial.protocol import Failure, Ready, WarmupDone
from search.trial.runner import TrialRunner

TYPICAL_DRAWS = 64  # configurations of the space that stand for a trial not yet drawn (the ETA)


def _commonest_share(data: PreparedData, split: str) -> float:
    """What always answering the commonest class scores on ``split``: chance, for this data."""
    counts = data.counts()[split]
    return max(counts.values()) / sum(counts.values()) if counts else 0.5


# What the bars' text takes at most: a run id ("trial confirm-baseline-s3"), the epoch count,
# the ETA and the best-and-baseline note, with the gaps between them
BARS_TEXT_WIDTH = 80


def training_bars(console: Console) -> Progress:
    """The overall and per-training progress bars, laid out for the terminal's width: from 80
    columns up every row is one whole line, and the bar itself gets what room is left (none at
    80 columns, where a bar of a few characters would crowd out the numbers)."""

    def text(template: str, wraps: bool = False) -> TextColumn:
        # the table narrows the columns that may wrap first: under 80 columns the run's name
        # and the note wrap onto a second line, and the counts and the ETA stay whole
        column = Column(no_wrap=not wraps, overflow="ellipsis")
        return TextColumn(template, table_column=column)

    room = console.width - BARS_TEXT_WIDTH - 1
    bar: list[ProgressColumn] = [BarColumn(bar_width=min(40, room))] if room >= 10 else []
    return Progress(
        text("{task.description}", wraps=True),
        *bar,
        text("{task.completed}/{task.total}"),
        # one ETA everywhere: remaining epochs x the measured epoch time (TrialRunner)
        text("ETA {task.fields[eta]}"),
        text("{task.fields[note]}", wraps=True),
        console=console,
        transient=False,
    )


class SearchFailed(RuntimeError):
    """The search cannot go on (the model cannot be trained at all): exit code 1."""


class Search:
    def __init__(self, opts: SearchOptions, argv: list[str], console: Console) -> None:
        self.opts = opts
        self.argv = argv
        self.console = console
        self.run_dir = opts.resolved_run_dir()
        self.space: Space = load_space(opts.space)
        self.chief = opts.role == "chief"

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    # ------------------------------------------------------------------------- the phases
    def run(self) -> int:
        o = self.opts
        if o.dry_run:
            return self._dry_run()
        if not self.chief and not rundir.is_run_dir(self.run_dir):
            raise rundir.RunDirError(
                f"run directory {str(self.run_dir)!r} has no search yet: start its chief (the "
                "same command without --role worker) first."
            )
        fresh, fresh_root = not self.run_dir.exists(), not self.run_dir.parent.exists()
        try:
            return self._run_locked()
        except (DataError, rundir.RunDirError, NoRoom):
            # refused before anything was written (no data, offline): leave no empty run
            # directory holding only its lock file behind
            if (
                fresh
                and self.run_dir.is_dir()
                and {p.name for p in self.run_dir.iterdir()} <= {rundir.LOCK_NAME}
            ):
                shutil.rmtree(self.run_dir, ignore_errors=True)
                if fresh_root:
                    with contextlib.suppress(OSError):  # only if empty
                        self.run_dir.parent.rmdir()
            raise

    def _run_locked(self) -> int:
        o = self.opts
        with rundir.locked(self.run_dir) if self.chief else contextlib.nullcontext():
            resumed = rundir.check_identity(self.run_dir, o.identity())
            extended = resumed and self._check_extension()
            data = self._prepare_data()
            rundir.check_data(
                self.run_dir,
                manifest(data.discovery),
                write=self.chief,
                content_key=data.cache_dir.name,
            )
            if self.chief and resumed and not extended and self._finished():
                return self._already_done()
            config = self._run_config(data)
            if self.chief:
                data.write_reject_manifest(self.run_dir / "rejects.json")
                if o.tensorboard:
                    from search.tensorboard import write_experiment

                    write_experiment(self.run_dir, self.space)
                if not resumed or extended:  # an extension records its --trials and command
                    config.write(self.run_dir)
            engine = make_engine(o.engine, self.space, self._engine_settings(self.run_dir))
            with res.locked_results(self.run_dir):
                engine.resume(recorded_outcomes(self.run_dir))
            status = rundir.Status(self.run_dir, o.trials, write=self.chief)
            log = "worker.log" if self.chief else f"worker-{os.getpid()}.log"
            process = TrialProcessClient(
                self.run_dir,
                config,
                self.run_dir / "logs" / log,
                trials_per_process=o.trials_per_worker,
            )
            stopped: BaseException | None = None
            try:
                return self._search(data, engine, process, status, resumed)
            except Interrupted as exc:
                stopped = exc
                process.interrupt(exc.signum)  # it saves its last finished epoch, then exits
                status.update(state="interrupted", current_trial=None)
                raise
            except NoRoom as exc:  # a full or read-only disk: nothing more can be written
                stopped = exc
                with contextlib.suppress(OSError):
                    status.update(state="stopped: no room to write", current_trial=None)
                raise
            except BaseException:
                with contextlib.suppress(OSError):  # the disk may be what failed
                    status.update(state="failed")
                raise
            finally:
                process.close()
                engine.close()  # e.g. stop serving Keras Tuner's oracle, if this chief did
                if stopped is None:  # stopping fast matters more: reports.build makes it
                    self._write_report()

    def _search(
        self,
        data: PreparedData,
        engine: SearchEngine,
        process: TrialProcessClient,
        status: rundir.Status,
        resumed: bool,
    ) -> int:
        o = self.opts
        warm, ready = self._warmup(process, data)
        est = self._estimator(warm, data)
        progress_now = self._progress()
        if resumed:
            self.say(f"resuming: {progress_now.trials_done} of {o.trials} trials already done")
        for line in self._plan(data, engine, warm, ready, est, progress_now):
            self.say(line)
        status.update(epochs_planned=planning.total_epochs(o, engine))
        budget = Budget(o.time_budget, self.say)
        bars = training_bars(self.console)
        with bars:
            overall = bars.add_task(
                "all epochs",
                total=planning.total_epochs(o, engine),
                completed=planning.epochs_done(o, engine, progress_now),
                note=self._note(),
                eta="",
            )
            runner = TrialRunner(
                self.run_dir,
                o,
                lambda values: self._params(values, data),
                process,
                status,
                bars,
                overall,
                est,
                n_validation=data.split_size("validation"),
                chance=_commonest_share(data, "validation"),
                test_chance=_commonest_share(data, "test"),
                space=self.space,
                trainings_left=self._trainings_left,
                folds=data.fold_count(),
            )
            if self.chief and o.baseline and not progress_now.baseline_done:
                after = f" after {progress_now.trials_done} of {o.trials} trials"
                if not budget.fits(
                    est.trial_s(o.max_epochs, est.warm), "the baseline", after=after
                ):
                    return self._finish(data, status, engine.needed_checkpoints())
                runner.run(
                    TrialSpec(res.BASELINE_ID, baseline_values(self.space), o.max_epochs),
                    engine=None,
                    judged_on=data.split_size("test") if o.confirm else None,
                )
            loop = SearchLoop(
                run_dir=self.run_dir,
                engine=engine,
                runner=runner,
                budget=budget,
                say=self.say,
                trials=o.trials,
                max_failures=o.max_failures,
                trial_seconds=est.trial_s,
                reserve_seconds=lambda: self._confirm_runs_left() * est.trial_s(o.max_epochs),
                # only the chief knows what every process still needs
                after_trial=(lambda: self._prune_checkpoints(engine, status))
                if self.chief
                else (lambda: None),
            )
            if engine.serves_workers():
                self.say(
                    f"serving Keras Tuner's oracle on {o.oracle}; start workers with the same "
                    f"options and --role worker --oracle {o.oracle} (python -m search.launch "
                    "starts both)"
                )

                def on_change(n: int) -> None:
                    trials = res.search_trials(res.load_trials(self.run_dir))
                    trained = int((trials["epochs"] - trials["initial_epoch"]).sum())
                    base = o.max_epochs if self._progress().baseline_done else 0
                    bars.update(overall, completed=trained + base, note=self._note())

                loop.serve(on_change)
                engine.close()
            elif loop.run() is Stop.FAILURES:
                status.update(state="failed")
                self.say(
                    f"stopping: {o.max_failures} consecutive trials failed; last error: "
                    f"{loop.last_error}. Results so far are in {self.run_dir}; trial process "
                    f"log: {self.run_dir / 'logs' / 'worker.log'}."
                )
                return 1
            bars.update(overall, note=self._note())
            if self.chief and o.confirm and self._progress().trials_done >= o.trials:
                finish.run_confirmation(
                    self.run_dir,
                    runner,
                    budget,
                    self.say,
                    seeds=o.confirm,
                    top=o.confirm_top,
                    max_epochs=o.max_epochs,
                    baseline=baseline_values(self.space) if o.baseline else None,
                    test_labels=data.cached.split("test")[1],
                    options=o.to_dict(),
                )
        process.close()
        needed = engine.needed_checkpoints()  # what a larger --trials would promote from
        if not self.chief:
            self.say(
                f"worker done: the search has its {o.trials} trials; its chief exports the "
                "best model and writes the report."
            )
            return 0
        return self._finish(data, status, needed)

    def _finish(self, data: PreparedData, status: rundir.Status, needed: set[str]) -> int:
        finish.prune_search_checkpoints(self.run_dir, needed)
        trials = res.load_trials(self.run_dir)
        search = res.search_trials(trials)
        counts = search["status"].value_counts().to_dict()
        self.say(f"trials: {len(search)} ({', '.join(f'{v} {k}' for k, v in counts.items())})")
        best = finish.best_trial_line(trials, data.split_size("validation"))
        if best is None:
            self.say("no trial completed: nothing to export.")
            status.update(state="finished")
            return 1
        self.say(best)
        self.say("exporting the best model and checking it in a fresh process ...")
        from search.export import export_checked

        with output_to(self.run_dir / "logs" / "export.log", enabled=not self.opts.debug):
            export = export_checked(self.run_dir)  # in here: TensorFlow is loaded already
        if export.room is not None:
            raise export.room
        if export.out:
            self.say(export.out)
        if export.err:
            sys.stderr.write(export.err + "\n")
        if export.code:
            self.say("export check failed; see above. Results are kept.")
        summary = finish.write_summary(self.run_dir, data, self.opts.to_dict())
        status.update(state="finished", disk_mb=rundir.disk_usage_mb(self.run_dir))
        took = format_seconds(status.session_seconds())
        if status.data["wall_seconds_before"] > 0:  # resumed: the report counts every session
            took += f" ({format_seconds(status.data['wall_seconds'])} with earlier sessions)"
        self.say(
            f"done in {took}; results in {self.run_dir} (peak disk "
            f"{status.data['peak_disk_mb']:.0f} MB)"
        )
        for line in (
            finish.winner_line(summary),
            summary["sentence"],
            finish.exported_line(summary),
        ):
            if line:
                self.say(line)
        return 0 if export.code == 0 else 1

    # ------------------------------------------------------------------------ collaborators
    def _prepare_data(self) -> PreparedData:
        config = self.opts.data_config()
        if is_default(config.data_dir) and not config.data_dir.exists():
            self.say(
                f"no --data-dir and no ./data: fetching the default data set (Microsoft's Cats "
                f"and Dogs, 786 MiB, SHA-256 checked) into {config.data_dir.parent}, once"
            )
            import_tensorflow_quietly(enabled=not self.opts.debug)  # get_file loads Keras
            fetch_default()
        with progress_bars(enabled=self.console.is_terminal) as bars:
            data = prepare(config, progress=bars)
        # TensorFlow loads next (engines, the plan's model): quietly, and only now, so that a
        # mistake in the data is reported without waiting for it
        import_tensorflow_quietly(enabled=not self.opts.debug)
        return data

    def _run_config(self, data: PreparedData) -> RunConfig:
        return RunConfig(
            identity=self.opts.identity(),
            options=self.opts.to_dict(),
            space=self.space,
            data_config=self.opts.data_config(),
            classes=tuple(data.classes),
            data={
                "layout": data.discovery.layout,
                "counts": data.counts(),
                "skipped": len(data.cached.rejects),
                "cache": str(data.cache_dir),
            },
            versions=rundir.library_versions(),
            command="python -m search.run " + shlex.join(self.argv),
            created_at=rundir.now_iso(),
        )

    def _engine_settings(self, state_dir: Path) -> EngineSettings:
        o = self.opts
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
            objective=o.objective,
            tuner_id=os.environ.get("KERASTUNER_TUNER_ID")
            or ("chief" if self.chief else f"worker-{socket.gethostname()}-{os.getpid()}"),
        )

    def _params(self, values: dict, data: PreparedData) -> AlexNetParams:
        return resolve(
            values,
            image_size=self.opts.image_size,
            width=self.opts.width,
            num_classes=len(data.classes),
            space=self.space,
        )

    def _estimator(self, warm: WarmupDone, data: PreparedData) -> planning.Estimator:
        """Epoch times from the warm-up's (the baseline's) speed, for a sample of the space."""
        typical = tuple(self._params(v, data) for v in sample(self.space, TYPICAL_DRAWS))
        return planning.Estimator.from_warmup(
            warm, data, self._params(baseline_values(self.space), data), typical
        )

    def _warmup(self, process: TrialProcessClient, data: PreparedData) -> tuple[WarmupDone, Ready]:
        warm = process.warmup(self._params(baseline_values(self.space), data))
        if isinstance(warm, Failure) or process.ready is None:
            error = warm.error if isinstance(warm, Failure) else "no answer"
            raise SearchFailed(
                f"the warm-up (training the baseline model on one batch) failed: {error}"
            )
        return warm, process.ready

    def _plan(
        self,
        data: PreparedData,
        engine: SearchEngine,
        warm: WarmupDone,
        ready: Ready,
        est: planning.Estimator,
        progress_now: planning.Progress,
    ) -> list[str]:
        blog = build_alexnet(self._params(baseline_values(self.space), data))
        n_params = int(blog.count_params())
        del blog
        return planning.plan_lines(
            self.opts,
            run_dir=str(self.run_dir),
            data=data,
            space=self.space,
            engine=engine,
            blog_params=n_params,
            warm=warm,
            ready=ready,
            est=est,
            progress=progress_now,
        )

    def _dry_run(self) -> int:
        data = self._prepare_data()
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
            process = TrialProcessClient(Path(tmp), self._run_config(data), Path(tmp) / "log")
            try:
                warm, ready = self._warmup(process, data)
            finally:
                process.close()
            est = self._estimator(warm, data)
            empty = planning.Progress(0, False, planning.confirm_runs_total(self.opts), 0)
            empty = replace(empty, confirm_runs_left=empty.confirm_runs_total)
            for line in self._plan(data, engine, warm, ready, est, empty):
                self.say(line)
        self.say("dry run: nothing was trained.")
        return 0

    # ----------------------------------------------------------------------------- state
    def _check_extension(self) -> bool:
        """Whether this command extends the run (a larger --trials, --confirm or --confirm-top
        than it was started with) or changes how it ends (--refit, --refit-seeds, --tta,
        --margin); smaller values are refused: what was run is never taken back."""
        done = len(res.search_trials(res.load_trials(self.run_dir)))
        if self.opts.trials < done:
            raise rundir.RunDirError(
                f"--trials {self.opts.trials} is fewer than the {done} trials run directory "
                f"{str(self.run_dir)!r} has done: trials are never taken back. Pass --trials "
                f"{done} or more to continue it, or another --run-dir for a new search."
            )
        before = rundir.RunConfig.read(self.run_dir).options
        for key, flag in (("confirm", "--confirm"), ("confirm_top", "--confirm-top")):
            was, now = int(before.get(key, 0)), int(getattr(self.opts, key))
            if now < was:
                raise rundir.RunDirError(
                    f"{flag} {now} is fewer than the {was} run directory {str(self.run_dir)!r} "
                    f"was confirmed with: evidence is never taken back. Pass {flag} {was} or "
                    "more to continue it, or another --run-dir."
                )
        changed = False
        if self.opts.trials > int(before.get("trials", 0)):
            self.say(
                f"extending the search: {done} done, {self.opts.trials - done} to run "
                f"(--trials {before.get('trials')} -> {self.opts.trials})"
            )
            changed = True
        for key, flag in (("confirm", "--confirm"), ("confirm_top", "--confirm-top")):
            if int(getattr(self.opts, key)) > int(before.get(key, 0)):
                self.say(
                    f"extending the confirmation: {flag} {before.get(key)} -> "
                    f"{getattr(self.opts, key)} (runs done before are reused)"
                )
                changed = True
        for key in ("refit", "refit_seeds", "tta", "margin"):
            changed |= before.get(key) != getattr(self.opts, key)
        return changed

    def _finished(self) -> bool:
        """Whether this exact command has nothing left to do: every trial and evidence run,
        a passed export and the summary are on disk."""
        status = rundir.read_json(self.run_dir / "status.json") or {}
        export = rundir.read_json(self.run_dir / "export.json") or {}
        progress = self._progress()
        return (
            status.get("state") == "finished"
            and progress.trials_done >= self.opts.trials
            and progress.confirm_runs_left == 0
            and bool(export.get("passed", export.get("equal")))
            and (self.run_dir / "summary.json").exists()
            and (self.run_dir / "report.html").exists()
        )

    def _already_done(self) -> int:
        """A rerun of a finished command: its answer again, nothing trained or exported."""
        summary = rundir.read_json(self.run_dir / "summary.json") or {}
        self.say(
            f"this search is finished: {self._progress().trials_done} trials, evidence and "
            f"export done in {self.run_dir}; nothing to run (a larger --trials, --confirm or "
            "--confirm-top continues it)"
        )
        for line in (
            finish.winner_line(summary),
            summary.get("sentence"),
            finish.exported_line(summary),
        ):
            if line:
                self.say(line)
        self.say(f"report: {self.run_dir / 'report.html'}")
        return 0

    def _progress(self) -> planning.Progress:
        trials = res.load_trials(self.run_dir)
        total = planning.confirm_runs_total(self.opts)
        return planning.Progress(
            trials_done=len(res.search_trials(trials)),
            baseline_done=bool((trials["trial_id"] == res.BASELINE_ID).any()),
            confirm_runs_total=total,
            confirm_runs_left=finish.confirm_runs_left(self.run_dir, total, self.opts.to_dict()),
        )

    def _trainings_left(self) -> int:
        """Trainings still to start or finish in this process's share of the run."""
        p = self._progress()
        baseline = self.chief and self.opts.baseline and not p.baseline_done
        return max(0, self.opts.trials - p.trials_done) + int(baseline) + p.confirm_runs_left

    def _confirm_runs_left(self) -> int:
        return finish.confirm_runs_left(
            self.run_dir, planning.confirm_runs_total(self.opts), self.opts.to_dict()
        )

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

    def _write_report(self) -> None:
        """The HTML report, whatever the outcome; a report error never costs results."""
        if not self.chief:
            return
        try:
            from reports.writer import index_path, write_report

            path = write_report(self.run_dir)
        except Exception as exc:  # the results are safe on disk; say so and go on
            self.say(
                f"warning: the report could not be written ({exc}); rebuild it "
                f"with python -m reports.build {self.run_dir}"
            )
            return
        self.say(f"report: {path} (index: {index_path(self.run_dir.parent)})")
