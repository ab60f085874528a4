"""What a search will do and how long it will take: the lines printed before it starts.

Pure: everything it shows comes in as arguments (the options, the prepared data's counts, the
engine's schedule, the trial process's warm-up), so ``--dry-run`` and a real run print the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from data_pipeline.discover import SPLITS, layout_name
from data_pipeline.pipeline import PreparedData
from models.alexnet import AlexNetParams, multiply_adds
from search.engines import SearchEngine
from search.hardware import advice, nvidia_gpus
from search.options import SearchOptions
from search.rundir import format_seconds
from search.space import Space, describe
from search.trial.protocol import Ready, WarmupDone


def _architecture(params: AlexNetParams) -> AlexNetParams:
    """What an epoch's time depends on: the parameters with the training-only ones cleared."""
    return replace(params, dropout=0.0, learning_rate=1e-3, weight_decay=0.0)


@dataclass
class Estimator:
    """Seconds per epoch of a configuration, and per training's start, for the ETA and the
    time budget: from the warm-up, then from every epoch measured.

    An epoch's time depends on its configuration: here the dense-4,096 baseline trained 2.5 s
    per epoch, a dense-512 trial 1.65 s. So each epoch measured is kept with its
    configuration's architecture, and the estimate for a configuration is its own measured
    mean, or else a line through the measured ones in the dense layers' multiply-adds
    (convolutions are the same in every trial); before two widths are measured, its
    multiply-adds at the seconds per multiply-add measured so far (the warm-up's, the
    baseline's, before any). A configuration not yet drawn costs the mean over ``typical``, a
    sample of the search space. The warm-up's model is the slowest of the default space:
    pricing every epoch like it, then like the mean of all epochs timed, put the plan's ETA
    22% above the whole run's time here and the running ETA 17-26% above for its first three
    minutes (bench/README.md)."""

    warm_epoch_s: float
    warm_overhead_s: float = 3.0  # a training's start until one is measured
    warm: AlexNetParams = field(default_factory=AlexNetParams)  # the warm-up's model
    typical: tuple[AlexNetParams, ...] = ()  # a sample of the space; () counts as (warm,)
    measured: dict[AlexNetParams, list[float]] = field(default_factory=dict)
    overheads: list[float] = field(default_factory=list)

    @classmethod
    def from_warmup(
        cls,
        warm: WarmupDone,
        data: PreparedData,
        params: AlexNetParams,
        typical: tuple[AlexNetParams, ...] = (),
    ) -> Estimator:
        """``params``: the warm-up's model; ``typical``: configurations drawn from the space."""
        n_train, n_val = data.split_size("train"), data.split_size("validation")
        epoch_s = n_train / warm.train_img_s + n_val / warm.eval_img_s
        return cls(epoch_s, warm=params, typical=typical)

    def add(self, params: AlexNetParams, seconds: float) -> None:
        """A steady epoch of ``params`` (not a training's first, which traces) took
        ``seconds``."""
        self.measured.setdefault(_architecture(params), []).append(seconds)

    def add_training(self, overhead: float) -> None:
        """A training spent ``overhead`` seconds beyond its epochs' steady time: starting,
        tracing its first epoch, checkpoints, scoring."""
        self.overheads.append(max(0.0, overhead))

    @property
    def overhead_s(self) -> float:
        """The median training's, the prior counted as one: a process's first training also
        starts the process, and the baseline's is scored on test (5-8 s against 1-2 s here)."""
        return statistics.median([self.warm_overhead_s, *self.overheads])

    def epoch_s(self, params: AlexNetParams | None = None) -> float:
        """Seconds per epoch of ``params``; None: of a configuration not yet drawn."""
        line = self._line()
        if params is None:
            return statistics.fmean(self._one(p, line) for p in self.typical or (self.warm,))
        return self._one(params, line)

    def trial_s(self, epochs: int, params: AlexNetParams | None = None) -> float:
        return epochs * self.epoch_s(params) + self.overhead_s

    def _one(self, params: AlexNetParams, line: Callable[[AlexNetParams], float]) -> float:
        own = self.measured.get(_architecture(params))
        return statistics.fmean(own) if own else line(params)

    def _line(self) -> Callable[[AlexNetParams], float]:
        """Seconds per epoch of an architecture not measured yet."""
        points = [(multiply_adds(a), statistics.fmean(s), len(s)) for a, s in self.measured.items()]
        if len({dense for (_, dense), _, _ in points}) >= 2:
            w = sum(n for _, _, n in points)
            x_mean = sum(dense * n for (_, dense), _, n in points) / w
            y_mean = sum(y * n for _, y, n in points) / w
            sxx = sum(n * (dense - x_mean) ** 2 for (_, dense), _, n in points)
            sxy = sum(n * (dense - x_mean) * (y - y_mean) for (_, dense), y, n in points)
            slope = sxy / sxx
            if slope >= 0:  # a wider layer is not faster: noise otherwise, scale instead
                return lambda p: max(0.0, y_mean + slope * (multiply_adds(p)[1] - x_mean))
        if points:  # scale by multiply-adds from what was measured
            seconds = sum(y * n for _, y, n in points)
            macs = sum(sum(m) * n for m, _, n in points)
        else:
            seconds, macs = self.warm_epoch_s, sum(multiply_adds(self.warm))
        return lambda p: seconds * sum(multiply_adds(p)) / macs


@dataclass(frozen=True)
class Progress:
    """How far a run is: what the results tables hold."""

    trials_done: int
    baseline_done: bool
    confirm_runs_total: int
    confirm_runs_left: int


BLOG_PARAMS = 58_289_538  # the blog's AlexNet: 227px, full width, 2 classes


def confirm_runs_total(o: SearchOptions) -> int:
    """Runs of the evidence phase: the selection (each of the top M once per seed, when M >
    1), the judge (the winner and the baseline once per fresh seed, the baseline's first being
    the search's baseline run; with ``--select smallest`` also the smallest equivalent
    candidate, when the front has one) and the refits (``--refit-seeds``)."""
    if o.role != "chief" or o.confirm == 0:
        return 0
    select = o.confirm * o.confirm_top if o.confirm_top > 1 else 0
    judge = o.confirm * 2 - 1 if o.baseline else o.confirm
    smallest = o.confirm if o.select == "smallest" else 0  # at most: the front may have none
    return select + judge + smallest + (o.refit_seeds if o.refit != "none" else 0)


def total_epochs(o: SearchOptions, engine: SearchEngine) -> int:
    """Epochs of the whole run: the search's schedule, the baseline, the confirmation."""
    plan = engine.schedule(o.trials)
    return (
        sum(s.epochs - s.initial_epoch for s in plan)
        + (o.max_epochs if o.baseline else 0)
        + confirm_runs_total(o) * o.max_epochs
    )


def epochs_done(o: SearchOptions, engine: SearchEngine, p: Progress) -> int:
    plan = engine.schedule(o.trials)
    return (
        sum(s.epochs - s.initial_epoch for s in plan[: p.trials_done])
        + (o.max_epochs if p.baseline_done else 0)
        + max(0, p.confirm_runs_total - p.confirm_runs_left) * o.max_epochs
    )


def confirm_line(o: SearchOptions, p: Progress) -> str:
    if o.confirm == 0:
        return (
            "confirmation: off (--confirm 0): the comparison with the baseline will be "
            "unconfirmed and selection-biased (validation chose and scored the winner)"
        )
    base = " and the baseline (its seed 1: the search's baseline run)" if o.baseline else ""
    select = (
        f"the top {o.confirm_top} configurations x {o.confirm} seeds, each seed validated on "
        "a fold of train, choose the winner; then "
        if o.confirm_top > 1
        else "the search's best is the winner; "
    )
    times = f" {o.refit_seeds} times (their probabilities averaged)" if o.refit_seeds > 1 else ""
    refit = {
        "trainval": f"; the winner refitted on train + validation{times} is exported",
        "all": f"; the winner refitted on train + validation + test{times} is exported "
        "(--refit all: its accuracy is estimated by the judge runs, not measured)",
    }.get(o.refit, "; the winner's best judge run is exported (--refit none)")
    if o.tta == "flip":
        refit += ", each image scored with its mirror image too"
    return (
        f"confirmation: {select}the winner{base} x {o.confirm} fresh seeds, {o.max_epochs} "
        f"epochs, scored once on test{refit} ({p.confirm_runs_left} of "
        f"{p.confirm_runs_total} runs to go)"
    )


def plan_lines(
    o: SearchOptions,
    *,
    run_dir: str,
    data: PreparedData,
    space: Space,
    engine: SearchEngine,
    blog_params: int,
    warm: WarmupDone,
    ready: Ready,
    est: Estimator,
    progress: Progress,
) -> list[str]:
    counts = data.counts()
    n_train, n_val, n_test = (data.split_size(s) for s in SPLITS)
    per_class = "; ".join(
        f"{s}: " + ", ".join(f"{c} {n:,}" for c, n in sorted(v.items())) for s, v in counts.items()
    )
    done = progress.trials_done
    plan = engine.schedule(o.trials)
    search_epochs = sum(s.epochs - s.initial_epoch for s in plan[done:])
    baseline_epochs = o.max_epochs if o.baseline and not progress.baseline_done else 0
    runs_left = progress.confirm_runs_left
    confirm_epochs = runs_left * o.max_epochs
    eta = (
        est.trial_s(0) * (o.trials - done + runs_left + (1 if baseline_epochs else 0))
        + (search_epochs + confirm_epochs) * est.epoch_s()
        + baseline_epochs * est.epoch_s(est.warm)  # the warm-up's model is the baseline
    )
    return [
        f"run directory: {run_dir}",
        f"data: {data.config.data_dir} ({layout_name(data.discovery.layout)} layout) - "
        f"{n_train:,} train, "
        f"{n_val:,} validation (chooses), {n_test:,} test (judges, read only by the "
        f"judge runs) ({per_class}); {data.skipped_summary()}",
        *[f"  note: {note}" for note in data.discovery.notes],
        f"images: {o.image_size}px, batch {o.batch_size}, width x{o.width:g}, "
        f"augment {'on' if o.augment else 'off'}, seed {o.seed}",
        "search space:",
        *[f"  {line}" for line in describe(space)],
        *engine.describe(o.trials),
        (
            f"baseline (the blog's AlexNet): {blog_params:,} parameters"
            if (o.image_size, o.width) == (227, 1.0)
            else f"baseline (the blog's AlexNet at {o.image_size}px, width x{o.width:g}): "
            f"{blog_params:,} parameters ({BLOG_PARAMS:,} at the blog's 227px)"
        )
        + f", {o.max_epochs} epochs"
        + ("" if o.baseline else " - skipped (--no-baseline)"),
        f"device: {warm.policy} precision"
        + (f" ({ready.precision_reason})" if ready.precision_reason else "")
        + f", XLA {'on' if warm.xla else 'off'}",
        f"warm-up: {warm.train_img_s:.0f} img/s training, {warm.eval_img_s:.0f} img/s "
        f"evaluation -> ~{est.epoch_s(est.warm):.1f} s per epoch of the baseline, "
        f"~{est.epoch_s():.1f} s of a trial drawn from the space",
        *(
            [
                f"strategy: MirroredStrategy over {ready.replicas} replica(s); batch "
                f"{o.batch_size} per replica = global batch {ready.global_batch}"
            ]
            if o.strategy == "mirrored"
            else []
        ),
        *(
            [
                f"preset {o.preset}"
                + (f" ({o.preset_reason})" if o.preset_reason else "")
                + f": --subset {o.subset} --image-size {o.image_size} --width {o.width:g} "
                "(what the command line sets wins)"
            ]
            if o.preset
            else []
        ),
        confirm_line(o, progress),
        *advice(tf_gpus=ready.gpus, driver_gpus=nvidia_gpus(), eta_s=eta, preset=o.preset),
        f"to run: {o.trials - done} trials ({done} done), {search_epochs + baseline_epochs} "
        f"epochs + {confirm_epochs} confirmation epochs, ETA {format_seconds(eta)}"
        + (f" (time budget {format_seconds(o.time_budget)})" if o.time_budget else ""),
    ]
