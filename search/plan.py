"""What a search will do and how long it will take: the lines printed before it starts.

Pure: everything it shows comes in as arguments (the options, the prepared data's counts, the
engine's schedule, the trial process's warm-up), so ``--dry-run`` and a real run print the same.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from data_pipeline.discover import SPLITS, layout_name
from data_pipeline.pipeline import PreparedData
from search.engines import SearchEngine
from search.hardware import advice, nvidia_gpus
from search.options import SearchOptions
from search.rundir import format_seconds
from search.space import Space, describe
from search.trial.protocol import Ready, WarmupDone


@dataclass
class Estimator:
    """Seconds per epoch and per trial start, from the warm-up, refined by measured epochs.

    An epoch's time depends on its trial's configuration (dense width and LRN change it
    threefold), so the estimate is the mean over every epoch measured so far, which follows
    the mix of configurations the run trains: a window of recent epochs made the ETA jump by
    minutes from one trial to the next."""

    warm_epoch_s: float
    overhead_s: float = 3.0
    measured: list[float] = field(default_factory=list)

    @classmethod
    def from_warmup(cls, warm: WarmupDone, data: PreparedData) -> Estimator:
        n_train, n_val = data.split_size("train"), data.split_size("validation")
        return cls(n_train / warm.train_img_s + n_val / warm.eval_img_s)

    def epoch_s(self) -> float:
        return statistics.fmean(self.measured) if self.measured else self.warm_epoch_s

    def trial_s(self, epochs: int) -> float:
        return epochs * self.epoch_s() + self.overhead_s


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
    candidate, when the front has one) and the refit."""
    if o.role != "chief" or o.confirm == 0:
        return 0
    select = o.confirm * o.confirm_top if o.confirm_top > 1 else 0
    judge = o.confirm * 2 - 1 if o.baseline else o.confirm
    smallest = o.confirm if o.select == "smallest" else 0  # at most: the front may have none
    return select + judge + smallest + (1 if o.refit != "none" else 0)


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
        f"the top {o.confirm_top} configurations x {o.confirm} seeds on validation choose the "
        "winner; then "
        if o.confirm_top > 1
        else "the search's best is the winner; "
    )
    refit = {
        "trainval": "; the winner refitted on train + validation is exported",
        "all": "; the winner refitted on train + validation + test is exported (--refit all: "
        "its accuracy is estimated by the judge runs, not measured)",
    }.get(o.refit, "; the winner's best judge run is exported (--refit none)")
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
        est.trial_s(0) * (o.trials - done + runs_left)
        + (search_epochs + baseline_epochs + confirm_epochs) * est.epoch_s()
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
        f"evaluation -> ~{format_seconds(est.epoch_s())} per epoch",
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
