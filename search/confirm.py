"""The evidence phase: the search's best configurations chosen again over seeds, then judged.

The search's best validation score is optimistic: it is the best of many noisy scores, and the
same validation images chose the trial, its epoch and its promotions (the winner's curse); a
configuration can also win the search on one lucky seed and collapse on the next. So after the
search, in two stages that never share a run:

1. **select** (when ``--confirm-top`` M > 1): the top M distinct configurations are each
   trained from scratch with ``--confirm`` K selection seeds and never scored on test. Seed
   k is validated on fold k of the train images (``seed_fold``; the folds are
   ``data_pipeline.pipeline.selection_folds``), not on the validation images: those ranked
   the search's trials, so a configuration they happen to favour made the top M on that luck
   and would keep it over every seed. Each fold has validation's size and classes; its runs
   train on the rest of train + validation (as many images as a trial).
   A run's score is its *tail*: its validation accuracy averaged over its last epochs
   (``refit_window``), the epochs whose weights the shipped refit averages. Unlike its best
   epoch's, it is not the maximum of 20 noisy scores, whose optimism is larger for a flat,
   noisy curve than for a steady one. The winner is the best by ``robust_score``: the mean
   tail over its seeds minus its standard error, so a configuration with a collapsed seed
   loses to a steady one of similar mean. With M = 1 the search's choice stands and this
   stage is skipped.
2. **judge**: the winner and the baseline are trained with K *fresh* seeds (the same for both),
   their best epoch chosen on validation, then scored once on the test set, which nothing
   before has read: ``search.stats.paired_difference`` gives the verdict. No run that helped
   choose the winner judges it.

With ``--select smallest``, the smallest configuration of the accuracy-size front
(``search.pareto``) whose search score is within ``--margin`` points of the winner's is judged
too, with the same fresh seeds (chosen on validation scores only, like the winner), and
compared with the winner on test: when the whole interval of its difference lies within the
margin (``equivalent``), or it is ``better``, it is the configuration shipped.

Then (``--refit trainval``, the default) the shipped configuration is trained once more on train +
validation for the median best epoch of its judge runs (its weights the mean of its last
epochs', ``refit_window``), scored once on test, and that model is the one exported
(``refit``). ``confirm.csv`` has one row per finished run, written after its test predictions
(``confirm/<run_id>.npy``), so a run killed at any moment is either recorded
whole or run again.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from search.results import (
    BASELINE_ID,
    best_trial,
    flatten,
    load_trials,
    locked_results,
    number,
    ranked_trials,
    read_table,
    replace_rows,
)
from search.space import DEFAULT_SPACE, PARAM_NAMES, values_of
from search.stats import (
    DEFAULT_MARGIN,
    accuracy_ci,
    paired_difference,
    sentence,
    settle_hint,
)

SELECT, JUDGE, REFIT = "select", "judge", "refit"
STAGES = (SELECT, JUDGE, REFIT)
REFIT_MODES = ("trainval", "all", "none")
# --refit: the splits the shipped refit trains on ("all", like scikit-learn's refit=True, once
# the verdict is settled: its accuracy is then estimated by the judge runs, not measured)
REFIT_SPLITS = {"trainval": ("train", "validation"), "all": ("train", "validation", "test")}
SELECTS = ("best", "smallest")  # --select: what is shipped
# A refit ships the mean of its last epochs' weights, at most this many (bench/refit.py).
REFIT_WINDOW = 5
# --refit-seeds: the shipped model averages the class probabilities of this many refits, each
# trained with its own seed. One refit's accuracy moved by 0.5-3.9 points with its seed;
# averaging two gained +1.4 points (95% CI +0.5 to +2.3) on 402 further photos over five
# configurations (bench/README.md), for one more refit's training and twice the SavedModel.
DEFAULT_REFIT_SEEDS = 2
# --tta flip: the shipped model scores each image and its mirror image and averages the two
# class-probability vectors (``models.mirror``, as AlexNet did at test time). On fourteen
# searches' exports it added +1.4 points (95% t interval +0.6 to +2.2) on 402 further photos
# (bench/README.md, python -m bench.mirror), for no training and twice the serving compute;
# none is for classes a mirror image changes (text, left from right).
TTA_MODES = ("flip", "none")
DEFAULT_TTA = "flip"
# --refit all: what is said instead of a test score for a model that trained on the test images
NOT_MEASURED = (
    "not measured: it trained on every labelled image, test included, once the verdict was "
    "settled; its accuracy is estimated by the winner's judge runs (trained on fewer images)"
)
SMALLEST = "smallest"  # the candidate name of the smallest equivalent configuration

CONFIRM_COLUMNS = (
    "run_id",
    "stage",
    "candidate",
    "trial_id",
    "seed_index",
    "seed",
    *PARAM_NAMES,
    "search_val_accuracy",
    "val_accuracy",
    "best_epoch",
    "at_chance",
    "test_accuracy",
    "n_validation",
    "n_test",
    "epochs",
    "seconds",
    "peak_rss_mb",
    "status",
    "error",
    "ended_at",
    "averaged_epochs",
    "val_tail",
    "fit_accuracy",
    "fit_at_chance",
    "val_fold",
)


@dataclass(frozen=True)
class Candidate:
    """One configuration to confirm: ``trial_id`` is the search trial it came from."""

    trial_id: str
    values: dict[str, Any]
    search_val_accuracy: float | None

    @property
    def is_baseline(self) -> bool:
        return self.trial_id == BASELINE_ID


@dataclass(frozen=True)
class ConfirmRow:
    run_id: str
    stage: str  # select (no test: a fold of train), judge (fresh seeds, on test) or refit
    candidate: str  # "baseline" or "top-1", "top-2", ...
    trial_id: str
    seed_index: int
    seed: int
    values: dict[str, Any]  # every parameter of the space (one column each)
    search_val_accuracy: float | None
    val_accuracy: float | None
    best_epoch: int | None
    at_chance: bool  # its validation (a refit: test) accuracy cannot be told from chance
    test_accuracy: float | None
    n_validation: int
    n_test: int
    epochs: int
    seconds: float
    peak_rss_mb: float | None
    status: str
    error: str | None
    ended_at: str
    averaged_epochs: int | None = None  # a refit: its last epochs its weights are the mean of
    val_tail: float | None = None  # mean validation accuracy of its last ``refit_window`` epochs
    # a refit: its weights' accuracy on the train + validation images it trained on, and
    # whether that cannot be told from chance (it did not learn: a judge run is shipped)
    fit_accuracy: float | None = None
    fit_at_chance: bool = False
    # a selection run: the fold of train it was validated on (``seed_fold``; 0: the
    # validation images themselves, as every selection run recorded before folds was)
    val_fold: int | None = None


def candidates(
    trials: pd.DataFrame, *, top: int, baseline: dict[str, Any] | None
) -> list[Candidate]:
    """The ``top`` best distinct configurations of the search by validation accuracy, then
    the baseline (when the run has one). Ties go to the earlier trial id."""
    out: list[Candidate] = []
    seen: set[tuple[Any, ...]] = set()
    for row in ranked_trials(trials).to_dict("records"):
        values = params_of(row)
        key = tuple(sorted(values.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(Candidate(str(row["trial_id"]), values, float(row["val_accuracy"])))
        if len(out) == top:
            break
    if baseline is not None:
        base = trials[trials["trial_id"] == BASELINE_ID]
        score = number(base["val_accuracy"].iloc[0]) if len(base) else None
        out.append(Candidate(BASELINE_ID, dict(baseline), score))
    return out


def run_candidates(run_dir: Path, options: dict[str, Any]) -> list[Candidate]:
    """The search configurations a run's evidence phase confirms (its ``--confirm-top``)."""
    top = int(options.get("confirm_top", 1))
    return candidates(load_trials(Path(run_dir)), top=top, baseline=None)


def params_of(row: Any) -> dict[str, Any]:
    """A results row's parameter values as plain Python (JSON-ready, comparable)."""
    return values_of(DEFAULT_SPACE, row)


def candidate_name(
    cands: list[Candidate], cand: Candidate, table: pd.DataFrame | None = None
) -> str:
    """``baseline`` or ``top-k`` (its rank now); one name per configuration in ``confirm.csv``:
    a configuration confirmed before keeps its name, and a search extended since (whose new
    top-k is another trial) names the newcomer ``top-k, trial ID``."""
    if cand.is_baseline:
        return BASELINE_ID
    name = f"top-{[c for c in cands if not c.is_baseline].index(cand) + 1}"
    if table is None or table.empty:
        return name
    mine = table.loc[table["trial_id"].astype(str) == cand.trial_id, "candidate"]
    if len(mine):
        return str(mine.iloc[0])
    taken = set(table["candidate"].astype(str))
    return name if name not in taken else f"{name}, trial {cand.trial_id}"


def confirm_seed(seed: int, index: int, stage: str = JUDGE) -> int:
    """Seed ``index`` of a stage: the same for every candidate of the stage (runs are paired by
    seed), unlike any search trial's seed, and the judge's unlike the selection's (fresh)."""
    tag = f"confirm-{index}" if stage == JUDGE else f"{stage}-{index}"
    return (seed * 104_729 + zlib.crc32(tag.encode())) % 2**31


def run_id(cand: Candidate, index: int, stage: str = JUDGE, refit: str = "trainval") -> str:
    """``confirm-<trial>-s<k>`` (judge), ``select-<trial>-s<k>``, ``refit-<trial>`` and
    ``refit-<trial>-s<k>`` for its further seeds (``refit-all-<trial>...`` with ``--refit all``)."""
    if stage == REFIT:
        return refit_id(cand.trial_id, refit, index)
    return f"{'confirm' if stage == JUDGE else stage}-{cand.trial_id}-s{index + 1}"


def refit_id(trial_id: str, refit: str = "trainval", index: int = 0) -> str:
    """Refit seed ``index``'s run id; the first keeps the name it had before ``--refit-seeds``
    existed, so a finished run's refit counts as its seed 1."""
    base = f"refit-{trial_id}" if refit == "trainval" else f"refit-{refit}-{trial_id}"
    return base if index == 0 else f"{base}-s{index + 1}"


def refit_splits(row: Any) -> tuple[str, ...]:
    """The splits a refit row of ``confirm.csv`` trained on, from its run id."""
    rid = str(row["run_id"])
    return REFIT_SPLITS["all" if rid.startswith("refit-all-") else "trainval"]


def predictions_path(run_dir: Path, rid: str) -> Path:
    return Path(run_dir) / "confirm" / f"{rid}.npy"


def load_confirm(run_dir: Path) -> pd.DataFrame:
    table = read_table(
        Path(run_dir) / "confirm.csv",
        CONFIRM_COLUMNS,
        {"run_id": str, "trial_id": str, "error": str, "stage": str},
    )
    return table[table["run_id"].notna()].reset_index(drop=True)


def record_confirm(run_dir: Path, row: ConfirmRow) -> None:
    with locked_results(run_dir):
        added = pd.DataFrame([flatten(row)], columns=list(CONFIRM_COLUMNS))
        path, table = Path(run_dir) / "confirm.csv", load_confirm(run_dir)
        replace_rows(path, table, added, key="run_id", value=row.run_id)


def finished_runs(table: pd.DataFrame) -> set[str]:
    return set(table.loc[table["status"] == "completed", "run_id"].astype(str))


def _done(table: pd.DataFrame, stage: str) -> pd.DataFrame:
    return table[(table["status"] == "completed") & (table["stage"] == stage)]


def seed_fold(table: pd.DataFrame, index: int, folds: int) -> int:
    """The images selection seed ``index`` (0-based) is validated on: fold ``index + 1`` of the
    train images (cycling through the ``folds`` there are), the same for every candidate, so
    the candidates stay paired by seed. The validation images (0) where train holds no fold,
    and in a run directory whose selection runs were validated on them before folds existed,
    which its new runs stay paired with."""
    if folds < 1 or _selection_folds(table).isna().any():  # earlier runs: on validation
        return 0
    return index % folds + 1


def selected_on_folds(table: pd.DataFrame) -> bool:
    """Whether the selection's runs were validated on folds of train (``seed_fold``)."""
    folds = _selection_folds(table)
    return not folds.empty and bool((folds > 0).all())


def _selection_folds(table: pd.DataFrame) -> pd.Series:
    """Each finished selection run's fold (``val_fold``); NaN for one recorded before folds."""
    done = _done(table, SELECT)
    if "val_fold" not in done:
        return pd.Series(np.nan, index=done.index)
    return pd.to_numeric(done["val_fold"], errors="coerce")


def selection_images(table: pd.DataFrame) -> str:
    """The images the selection's runs were validated on, in words (summary, report, card)."""
    if not selected_on_folds(table):
        return "the validation images"
    return (
        "a fold of the train images per seed, the size of validation (not the validation "
        "images, which ranked the search's trials; each run trained on the rest of train + "
        "validation)"
    )


def robust_score(scores: Any) -> float:
    """How a configuration ranks in the selection: its mean validation accuracy over seeds
    minus the standard error of that mean. A collapsed seed (0.75, 0.75, 0.52: mean 0.673)
    costs it a standard error of 0.077, so it ranks below a steady configuration of the same
    mean (0.68, 0.67, 0.67); between steady ones the mean decides."""
    values = np.asarray(pd.to_numeric(pd.Series(scores), errors="coerce").dropna(), float)
    if values.size == 0:
        return -math.inf
    if values.size == 1:
        return float(values[0])
    return float(values.mean() - values.std(ddof=1) / math.sqrt(values.size))


def tail_epochs(epochs: int) -> range:
    """The last ``refit_window(epochs)`` epochs of a run of ``epochs``: those a selection run
    is scored on (``tail_accuracy``), and so the only ones it is validated on."""
    return range(epochs - refit_window(epochs) + 1, epochs + 1)


def tail_accuracy(per_epoch: list[tuple[int, float]], epochs: int) -> float | None:
    """A run's validation accuracy averaged over its last ``refit_window(epochs)`` epochs
    (``per_epoch``: (epoch, accuracy) in any order, a resumed run's included); None when it
    did not reach them all."""
    last = dict(per_epoch)
    wanted = tail_epochs(epochs)
    if not all(e in last and math.isfinite(last[e]) for e in wanted):
        return None
    return float(np.mean([last[e] for e in wanted]))


def selection_column(table: pd.DataFrame) -> str:
    """What the selection ranks on: each run's tail (``tail_accuracy``), or, for a run
    directory whose selection runs were recorded before it existed, their best epoch's
    validation accuracy, for all of them alike."""
    done = _done(table, SELECT)
    if "val_tail" not in done or done.empty:
        return "val_accuracy"
    tails = pd.to_numeric(done["val_tail"], errors="coerce")
    return "val_tail" if tails.notna().all() else "val_accuracy"


def selection_rule(column: str) -> str:
    what = (
        "validation accuracy of each run's last epochs"
        if column == "val_tail"
        else "best-epoch validation accuracy"
    )
    return f"mean over seeds of the {what}, minus its standard error"


def selection(table: pd.DataFrame, cands: list[Candidate]) -> pd.DataFrame:
    """The selection stage per candidate, best first: seeds, mean and sd of the runs' scores
    (``selection_column``), runs at chance, ``robust_score`` (ties: the better search rank)."""
    done = _done(table, SELECT)
    column = selection_column(table)
    rows = []
    for rank, cand in enumerate(c for c in cands if not c.is_baseline):
        mine = done[done["trial_id"].astype(str) == cand.trial_id]
        vals = pd.to_numeric(mine[column], errors="coerce").dropna()
        rows.append(
            {
                "trial_id": cand.trial_id,
                "search_rank": rank + 1,
                "seeds": len(vals),
                "val_mean": float(vals.mean()) if len(vals) else None,
                "val_sd": float(vals.std(ddof=1)) if len(vals) > 1 else None,
                "at_chance": int(flagged(mine["at_chance"]).sum()),
                "score": robust_score(vals),
                "search_val_accuracy": cand.search_val_accuracy,
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(["score", "search_rank"], ascending=[False, True]).reset_index(
        drop=True
    )


def choose_winner(table: pd.DataFrame, cands: list[Candidate]) -> Candidate | None:
    """The configuration that goes to the judge: with one candidate, the search's choice; with
    several, the best of the selection stage (None until one of its runs has finished)."""
    search_cands = [c for c in cands if not c.is_baseline]
    if len(search_cands) <= 1:
        return search_cands[0] if search_cands else None
    ranked = selection(table, search_cands)
    ranked = ranked[ranked["seeds"] > 0]
    if ranked.empty:
        return None
    best = str(ranked["trial_id"].iloc[0])
    return next(c for c in search_cands if c.trial_id == best)


def smaller_candidate(
    trials: pd.DataFrame, winner: Candidate, *, max_epochs: int, margin: float
) -> Candidate | None:
    """The smallest configuration on the accuracy-size front (at the full budget, baseline
    excluded) with fewer parameters than the winner and a search score at most ``margin``
    points below the winner's; None when there is none. Validation scores only: the test set
    judges it afterwards."""
    from search.pareto import front, full_budget

    points = full_budget(trials, max_epochs)
    points = points[points["trial_id"].astype(str) != BASELINE_ID]
    size = params_count(trials, winner.trial_id)
    if points.empty or size is None or winner.search_val_accuracy is None:
        return None
    floor = winner.search_val_accuracy - margin / 100
    near = front(points)
    near = near[(near["params"] < size) & (near["val_accuracy"] >= floor)]
    for row in near.to_dict("records"):
        if params_of(row) != winner.values:
            return Candidate(str(row["trial_id"]), params_of(row), float(row["val_accuracy"]))
    return None


def params_count(trials: pd.DataFrame, trial_id: str) -> int | None:
    """A trial's parameter count, from the results table."""
    mine = pd.to_numeric(
        trials.loc[trials["trial_id"].astype(str) == trial_id, "params"], errors="coerce"
    ).dropna()
    return int(mine.iloc[0]) if len(mine) else None


def smaller_judgement(
    run_dir: Path,
    table: pd.DataFrame,
    test_labels: np.ndarray,
    winner: Candidate,
    *,
    max_epochs: int,
    margin: float,
) -> tuple[Candidate | None, dict[str, Any]]:
    """``--select smallest``: the smaller candidate and its judgement against the winner, on
    the judge seeds both finished (paired). It ships when the verdict is ``equivalent`` (the
    whole 95% interval within +-``margin`` points) or ``better``; ``why`` says otherwise."""
    trials = load_trials(Path(run_dir))
    smaller = smaller_candidate(trials, winner, max_epochs=max_epochs, margin=margin)
    if smaller is None:
        return None, {
            "trial_id": None,
            "ships": False,
            "why": "no configuration of the accuracy-size front with fewer parameters than the "
            f"winner scored within {margin:g} points of it in the search",
        }
    size, best_size = params_count(trials, smaller.trial_id), params_count(trials, winner.trial_id)
    mine, best = judge_runs(table, smaller.trial_id), judge_runs(table, winner.trial_id)
    seeds = sorted(set(mine["seed_index"]) & set(best["seed_index"]))
    report: dict[str, Any] = {
        "trial_id": smaller.trial_id,
        "values": dict(smaller.values),
        "params": size,
        "winner_trial_id": winner.trial_id,
        "winner_params": best_size,
        "times_smaller": best_size / size if size and best_size else None,
        "seeds": len(seeds),
        "search_val_accuracy": smaller.search_val_accuracy,
    }
    if not seeds:
        return smaller, report | {
            "verdict": "inconclusive",
            "delta_points": None,
            "delta_ci95": None,
            "ships": False,
            "why": "its judge runs did not finish; rerun the same command to complete them",
        }
    small, large = (_judged(run_dir, runs, seeds, test_labels) for runs in (mine, best))
    diff = paired_difference(small, large, margin=margin)
    ships = diff.verdict in ("equivalent", "better")
    ci = diff.ci95
    interval = f"95% CI {ci[0]:+.1f} to {ci[1]:+.1f} points" if ci else "no interval"
    return smaller, report | {
        "verdict": diff.verdict,
        "delta_points": diff.points,
        "delta_ci95": list(ci) if ci is not None else None,
        "interval": interval,
        "test_accuracy_mean": float(small.mean()),
        "ships": ships,
        "why": None
        if ships
        else f"{diff.verdict} against the best ({interval}, margin +-{margin:g}): not shown "
        "to be as good, so the best is shipped",
    }


def count(n: int) -> str:
    """A parameter count as a sentence says it: 7.8M, or 12,345 below 100,000."""
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,}"


def smaller_phrase(report: dict[str, Any]) -> str:
    """How the sentence names a shipped smaller model: its size against the best's."""
    return (
        f"the {count(report['params'])}-parameter variant (trial {report['trial_id']}) is "
        f"{report['verdict']} to the best ({report['interval']}) and "
        f"{report['times_smaller']:.1f}x smaller"
    )


def judge_runs(table: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    done = _done(table, JUDGE)
    return done[done["trial_id"].astype(str) == trial_id].sort_values("seed_index")


def refit_at_chance_hint(table: pd.DataFrame, trial_id: str) -> str:
    """What to do about a refit that ended at chance: ship one of the winner's judge runs when
    one of them learned; when none did (random labels, too short a training), none is
    better to ship."""
    judged = judge_runs(table, trial_id)
    if len(judged) and not flagged(judged["at_chance"]).all():
        return "--refit none ships the winner's best judge run instead"
    return (
        "nor did any judge run of the winner: no training of this configuration learned "
        "here (too few epochs, or labels it cannot learn), so none is better to ship"
    )


def refit_epochs(table: pd.DataFrame, trial_id: str) -> int | None:
    """The refit's epochs: the median best epoch of the winner's judge runs (the epochs that
    validation chose for this configuration), rounded up; None before any has finished."""
    epochs = pd.to_numeric(judge_runs(table, trial_id)["best_epoch"], errors="coerce").dropna()
    return max(1, math.ceil(float(epochs.median()))) if len(epochs) else None


def refit_window(epochs: int) -> int:
    """How many of a refit's last epochs its shipped weights average (``TailMean``): up to
    ``REFIT_WINDOW``, a third of a short refit, and 1 (its last epoch) under 3 epochs."""
    return max(1, min(REFIT_WINDOW, epochs // 3))


def refit_ending(window: int) -> str:
    """A refit's weights in words (``window``: its last epochs they are the mean of)."""
    return f"the mean of its last {window} epochs' weights" if window > 1 else "its last epoch"


def averaged_epochs(row: Any) -> int:
    """The last epochs a refit row's weights are the mean of (1: its last epoch)."""
    return int(number(row["averaged_epochs"]) or 1)


def refit_seed_count(options: dict[str, Any]) -> int:
    """A run's ``--refit-seeds``: runs made before the option existed refitted once."""
    return int(options.get("refit_seeds", 1))


def tta_of(options: dict[str, Any]) -> str:
    """A run's ``--tta``: runs made before the option existed shipped one view per image."""
    return str(options.get("tta", "none"))


def tta_words(tta: str) -> str:
    """How the shipped model looks at an image: console, report and model card say it so."""
    if tta == "flip":
        return "each image scored with its mirror image, the two probabilities averaged"
    return "each image scored once"


def refit_runs(table: pd.DataFrame, trial_id: str, refit: str, seeds: int) -> list[pd.Series]:
    """The finished refits of ``trial_id`` among its first ``seeds`` (``--refit-seeds``), in
    seed order."""
    done = {str(r["run_id"]): r for _, r in _done(table, REFIT).iterrows()}  # the last row wins
    ids = [refit_id(trial_id, refit, i) for i in range(seeds)]
    return [done[rid] for rid in ids if rid in done]


def refit_learned(row: Any) -> bool:
    """Whether a refit's shipped weights learned the images they trained on: their accuracy
    on its train + validation images can be told from chance. Decided without test."""
    return not is_flagged(row.get("fit_at_chance", False))


def best_judge_run(table: pd.DataFrame, trial_id: str) -> pd.Series | None:
    """The winner's judge run with the best validation accuracy (ties: the earlier seed)."""
    runs = judge_runs(table, trial_id)
    if runs.empty:
        return None
    return runs.sort_values(["val_accuracy", "seed_index"], ascending=[False, True]).iloc[0]


def shipped_runs(table: pd.DataFrame, trial_id: str, refit: str, seeds: int = 1) -> list[pd.Series]:
    """The runs whose weights are exported (their class probabilities averaged): the refits
    that learned the images they trained on; else (``--refit none``, before any refit has
    finished, or when none learned while the winner's best judge run did) that judge run. A
    refit that did not learn is left out of the average, a choice that reads no test score;
    when nothing learned, the refits are shipped as they are: nothing better exists."""
    judged = best_judge_run(table, trial_id)
    refits = refit_runs(table, trial_id, refit, seeds) if refit != "none" else []
    if not refits:
        return [judged] if judged is not None else []
    learned = [r for r in refits if refit_learned(r)]
    if learned:
        return learned
    return [judged] if judged is not None and not is_flagged(judged["at_chance"]) else refits


def keep_checkpoints(table: pd.DataFrame) -> set[str]:
    """Runs whose weights may still be exported: every refit and each configuration's best
    judge run (the winner can change when the search or the confirmation is extended)."""
    keep = set(_done(table, REFIT)["run_id"].astype(str))
    judged = _done(table, JUDGE)
    judged = judged[judged["candidate"] != BASELINE_ID]
    ordered = judged.sort_values(["val_accuracy", "seed_index"], ascending=[False, True])
    return keep | set(ordered.drop_duplicates("trial_id")["run_id"].astype(str))


def _judged(run_dir: Path, runs: pd.DataFrame, seeds: list[int], labels: np.ndarray) -> np.ndarray:
    """Which test images each of ``seeds``' judge runs in ``runs`` got right (row s: seed s),
    the rows ``paired_difference`` pairs."""
    rids = runs.set_index("seed_index").loc[seeds, "run_id"]
    return np.stack([_correct(run_dir, rid, labels) for rid in rids])


def _correct(run_dir: Path, rid: str, labels: np.ndarray) -> np.ndarray:
    return np.load(predictions_path(run_dir, rid)) == labels


def evidence(
    run_dir: Path,
    table: pd.DataFrame,
    test_labels: np.ndarray,
    export: dict[str, Any] | None,
    *,
    cands: list[Candidate],
    refit: str = "trainval",
    refit_seeds: int = 1,
    margin: float = DEFAULT_MARGIN,
    select: str = "best",
    max_epochs: int = 0,
) -> dict[str, Any]:
    """``summary.json``: the confirmed answer to "is the tuned AlexNet better than the blog's?"

    The verdict compares the winner's and the baseline's *judge* runs only, on the seeds that
    finished for both (it is paired by seed). Accuracies are fractions; ``delta_*`` are
    percentage points; ``verdict`` is one of ``search.stats.VERDICTS`` (or ``unconfirmed``).
    """
    n_test = len(test_labels)
    out: dict[str, Any] = {"test_n": n_test, "confirmed": True, "margin_points": margin}
    search_cands = [c for c in cands if not c.is_baseline]
    ranked = selection(table, search_cands) if len(search_cands) > 1 else pd.DataFrame()
    out["selection"] = {
        "stage": "select"
        if len(search_cands) > 1
        else "none (one candidate: the search's best stands)",
        "rule": selection_rule(selection_column(table)),
        "validated_on": selection_images(table),
        "on_folds": selected_on_folds(table),
        "candidates": [_plain(r) for r in ranked.to_dict("records")],
    }
    pick = choose_winner(table, cands)
    out["at_chance_runs"] = sorted(table.loc[flagged(table["at_chance"]), "run_id"].astype(str))
    if pick is None:
        return {
            **out,
            "verdict": "inconclusive",
            "sentence": "Inconclusive: no selection run finished, so no winner was chosen; "
            "rerun the same command to continue.",
        }
    smaller: dict[str, Any] | None = None
    if select == SMALLEST:  # the smaller equivalent one is shipped, and judged against the blog
        small, smaller = smaller_judgement(
            run_dir, table, test_labels, pick, max_epochs=max_epochs, margin=margin
        )
        out["smaller"] = smaller
        if small is not None and smaller["ships"]:
            pick = small
    done = _done(table, JUDGE)
    win = judge_runs(table, pick.trial_id)
    base = done[done["candidate"] == BASELINE_ID]
    seeds = sorted(set(win["seed_index"]) & set(base["seed_index"]))
    out["confirm_seeds"] = len(seeds)
    out["winner"] = _side(win, seeds) | {
        "candidate": str(win["candidate"].iloc[0]) if len(win) else None,
        "trial_id": pick.trial_id,
        "params": dict(pick.values),
        "search_val_accuracy": pick.search_val_accuracy,
    }
    if len(base):
        out["baseline"] = _side(base, seeds) | {
            "search_val_accuracy": number(base["search_val_accuracy"].iloc[0])
        }
    if seeds and len(base):
        w, b = (_judged(run_dir, runs, seeds, test_labels) for runs in (win, base))
        diff = paired_difference(w, b, margin=margin)
        if _all_at_chance(win, seeds) and _all_at_chance(base, seeds):
            # no model learned (random labels, a broken pipeline): any test difference between
            # two chance-level models is noise, whatever an interval on 2-5 seeds says
            diff = diff._replace(
                verdict="inconclusive",
                seeds_needed=None,
                seeds_to_decide=None,
                images_to_settle=(),
                reason="every judge run of both ended at chance on validation: neither model "
                "learned, so no difference between them is claimed",
            )
        out |= {
            "delta_points": diff.points,
            "delta_ci95": list(diff.ci95) if diff.ci95 is not None else None,
            "verdict": diff.verdict,
            "seeds_needed": diff.seeds_needed,
            "seeds_to_decide": diff.seeds_to_decide,
            "images_to_settle": [list(pair) for pair in diff.images_to_settle] or None,
            "settle": settle_hint(diff) or None,
            "sentence": sentence(
                n_test=n_test,
                seeds=len(seeds),
                winner_acc=float(w.mean()),
                baseline_acc=float(b.mean()),
                diff=diff,
            ),
        }
        if smaller is not None and smaller["ships"]:
            phrase = smaller_phrase(smaller)
            out["sentence"] = (
                f"{phrase[0].upper()}{phrase[1:]}; against the blog: "
                f"{out['sentence'][0].lower()}{out['sentence'][1:]}"
            )
        elif smaller is not None and smaller["trial_id"] is not None:
            out["sentence"] += (
                f" The smaller variant (trial {smaller['trial_id']}, "
                f"{count(smaller['params'])} parameters) was not shipped: {smaller['why']}."
            )
    elif len(win) and not len(base):
        out |= {
            "delta_points": None,
            "delta_ci95": None,
            "verdict": "unconfirmed",
            "sentence": "No baseline judge runs (--no-baseline or none finished): the "
            "tuned model cannot be compared with the blog's.",
        }
    else:
        out |= {
            "delta_points": None,
            "delta_ci95": None,
            "verdict": "inconclusive",
            "sentence": "Inconclusive: the winner's and the baseline's judge runs did not "
            "finish (time budget or failures); rerun the same command to complete them.",
        }
    out["shipped"] = shipped_summary(table, pick, refit, refit_seeds)
    if export:
        out["exported"] = exported_summary(export)
    return out


def run_evidence(
    run_dir: Path,
    table: pd.DataFrame,
    test_labels: np.ndarray,
    export: dict[str, Any] | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    """``evidence`` with a run's own options (its ``--confirm-top``, ``--refit``, ``--margin``
    and ``--select``)."""
    return evidence(
        run_dir,
        table,
        test_labels,
        export,
        cands=run_candidates(run_dir, options),
        refit=options.get("refit", "none"),
        refit_seeds=refit_seed_count(options),
        margin=float(options.get("margin", DEFAULT_MARGIN)),
        select=str(options.get("select", "best")),
        max_epochs=int(options.get("max_epochs", 0)),
    )


def shipped_pick(
    run_dir: Path, table: pd.DataFrame, test_labels: np.ndarray, options: dict[str, Any]
) -> Candidate | None:
    """The configuration a run ships: the winner, or with ``--select smallest`` the smaller
    candidate once its judge runs show it equivalent to the winner (or better)."""
    pick = choose_winner(table, run_candidates(run_dir, options))
    if pick is None or options.get("select", "best") != SMALLEST:
        return pick
    small, report = smaller_judgement(
        run_dir,
        table,
        test_labels,
        pick,
        max_epochs=int(options.get("max_epochs", 0)),
        margin=float(options.get("margin", DEFAULT_MARGIN)),
    )
    return small if small is not None and report["ships"] else pick


def shipped_summary(
    table: pd.DataFrame, pick: Candidate, refit: str, seeds: int = 1
) -> dict[str, Any]:
    """Which model is shipped, on which images it was trained and how it was scored."""
    rows = shipped_runs(table, pick.trial_id, refit, seeds)
    if not rows:
        return {"run_id": None, "what": "nothing yet: no judge or refit run finished"}
    row, ids = rows[0], [str(r["run_id"]) for r in rows]
    refits = refit_runs(table, pick.trial_id, refit, seeds) if refit != "none" else []
    if str(row["stage"]) == REFIT:
        window, splits = averaged_epochs(row), refit_splits(row)
        what = f"the winner refitted on {' + '.join(splits)}: {refit_ending(window)}"
        if len(rows) > 1:
            what = (
                f"the winner refitted {len(rows)} times on {' + '.join(splits)} with different "
                f"seeds, each {refit_ending(window)}; their class probabilities averaged"
            )
        left = [str(r["run_id"]) for r in refits if str(r["run_id"]) not in ids]
        if left:
            what += f" ({', '.join(left)} left out: it did not learn the images it trained on)"
        return {
            "run_id": " + ".join(ids),
            "run_ids": ids,
            "what": what,
            "trained_on": list(splits),
            "epochs": int(row["epochs"]),
            "averaged_epochs": window,
            "scored": "never: " + NOT_MEASURED.removeprefix("not measured: ")
            if "test" in splits
            else "once on the test set, which no choice used",
        }
    if refit == "none":
        why = " (--refit none)"
    elif not refits:
        why = " (the refit has not finished)"
    else:
        fits = ", ".join(f"{number(r['fit_accuracy']) or 0:.4f}" for r in refits)
        why = (
            f" (the refit{'s' if len(refits) > 1 else ''} did not learn: accuracy {fits}"
            " on the train + validation images trained on, not above chance)"
        )
    return {
        "run_id": ids[0],
        "run_ids": ids,
        "what": "the winner's judge run with the best validation accuracy" + why,
        "trained_on": ["train"],
        "best_epoch": number(row["best_epoch"]),
        "scored": "once on the test set; its epoch and this run were chosen on validation",
    }


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (number(v) if isinstance(v, float) else v) for k, v in record.items()}


def _older_seed(export: dict[str, Any]) -> list[int]:
    """An export written before ``source_seeds``: its one run's seed (none: the best trial)."""
    seed = export.get("source_seed")
    return [] if seed is None else [int(seed)]


def exported_summary(export: dict[str, Any]) -> dict[str, Any]:
    acc, n = export.get("test_accuracy_in_memory"), int(export.get("n_test", 0))
    if export.get("trained_on_test"):  # --refit all: the test images trained it
        acc = None
    return {
        "trial_id": export.get("source_trial"),
        "run_id": export.get("source_run"),
        "seeds": export.get("source_seeds", _older_seed(export)),
        # a refitted model trained on the validation images: no validation score for it
        "val_accuracy": None
        if export.get("trained_on_validation")
        else export.get("val_accuracy_in_memory"),
        "test_accuracy": acc,
        "test_ci95": list(accuracy_ci(acc, n)) if acc is not None and n else None,
        "tta": export.get("tta", "none"),  # how every accuracy above looked at an image
        "test_time": tta_words(export.get("tta", "none")),
    }


def unconfirmed(trials: pd.DataFrame, export: dict[str, Any] | None, n_test: int) -> dict[str, Any]:
    """``summary.json`` of a run with ``--confirm 0``: what the search chose, said plainly."""
    best = best_trial(trials)
    base = trials[trials["trial_id"] == BASELINE_ID].dropna(subset=["val_accuracy"])
    out: dict[str, Any] = {
        "test_n": n_test,
        "confirmed": False,
        "confirm_seeds": 0,
        "verdict": "unconfirmed",
        "delta_points": None,
        "delta_ci95": None,
        "sentence": "Unconfirmed (--confirm 0): the best trial's validation accuracy was "
        "selected on the same images that scored it, so its gain over the baseline is "
        "optimistic; rerun the same command with --confirm 3 for a verdict on the test set "
        "(this run continues: nothing is trained twice).",
    }
    if best is not None:
        out["winner"] = {
            "trial_id": str(best["trial_id"]),
            "params": params_of(best),
            "search_val_accuracy": float(best["val_accuracy"]),
        }
    if len(base):
        out["baseline"] = {"search_val_accuracy": float(base["val_accuracy"].iloc[0])}
    if export:
        out["exported"] = exported_summary(export)
    return out


FLAG_TEXTS = ("True", "true", "1", "1.0")  # how confirm.csv holds a set flag


def flagged(column: pd.Series) -> pd.Series:
    """A boolean column of ``confirm.csv`` as booleans (the CSV holds True/False, 1/0)."""
    return column.astype(str).isin(FLAG_TEXTS)


def is_flagged(value: Any) -> bool:
    """One cell of such a column as a boolean (an empty or missing cell: False)."""
    return str(value) in FLAG_TEXTS


def _all_at_chance(frame: pd.DataFrame, seeds: list[int]) -> bool:
    paired = frame[frame["seed_index"].isin(seeds)]
    return bool(len(paired)) and bool(flagged(paired["at_chance"]).all())


def _side(frame: pd.DataFrame, seeds: list[int]) -> dict[str, Any]:
    paired = frame[frame["seed_index"].isin(seeds)].sort_values("seed_index")
    return {
        "val_accuracy_mean": float(paired["val_accuracy"].mean()) if len(paired) else None,
        "test_accuracy_mean": float(paired["test_accuracy"].mean()) if len(paired) else None,
        "test_accuracy_seeds": [float(v) for v in paired["test_accuracy"]],
        "val_accuracy_seeds": [float(v) for v in paired["val_accuracy"]],
    }
