"""``python -m search.run --trials 30``: search AlexNet variants against the blog's baseline.

Trials are counted as the report counts them (the baseline is extra). With the defaults
(--max-epochs 20, --factor 3) one Hyperband iteration is exactly 30 trials in 3 brackets
(12x3 -> 4x7 -> 2x20 epochs, 6x7 -> 2x20, 4x20). Other values of --trials run whole
iterations and then the first trials of the next one, in Keras Tuner's order (the bracket
with the most trials first); the plan printed before training shows the exact schedule.
Killing the search and running the same command again resumes it.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from data_pipeline.discover import DEFAULT_SEED, DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION
from data_pipeline.errors import DataError
from data_pipeline.files import NoRoom, no_room
from search import interrupt
from search.confirm import DEFAULT_REFIT_SEEDS, DEFAULT_TTA, REFIT_MODES, SELECTS, TTA_MODES
from search.devices import PRECISIONS, XLA_MODES
from search.engines import ENGINES, OBJECTIVES
from search.hardware import auto_preset, visible_gpus
from search.options import PRESETS, OptionError, SearchOptions, apply_preset, parse_duration
from search.rundir import ROOM_FIX, RunDirError
from search.space import SpaceError
from search.stats import DEFAULT_MARGIN
from search.storage import StorageError

EXAMPLES = """examples:
  python -m search.run --trials 30             # cpu preset when there is no GPU
  python -m search.run --dry-run               # the plan and its ETA only
  python -m search.run --data-dir photos/      # your own folder or .zip
  python -m search.run --trials 60             # continue a finished run to 60
  python -m search.run --preset blog --strategy mirrored   # all GPUs, 227px
  python -m search.launch --workers 3 --run-dir runs/big   # chief + 3 workers
"""


def _paragraphs(text: str, width: int = 79) -> str:
    """``text``'s paragraphs re-wrapped to ``width``: help that fits an 80-column terminal."""
    return "\n\n".join(textwrap.fill(" ".join(par.split()), width) for par in text.split("\n\n"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.run",
        description=_paragraphs((__doc__ or "").replace("``", "")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    g_data = p.add_argument_group("data", "which images, at which size, split how")
    g_data.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data folder or .zip; default: ./data if it exists, else Microsoft's Cats and "
        "Dogs, downloaded once into the Keras cache ($KERAS_HOME/datasets)",
    )
    g_data.add_argument(
        "--preset",
        choices=("auto", *sorted(PRESETS)),
        default="auto",
        help="sizes for what the command line leaves unset; cpu: --subset 2000 --image-size "
        "128 --width 0.5 (minutes on a laptop; the plan gives the ETA); blog: the blog's "
        "setting, every image at 227px (a GPU job); auto: blog where a GPU is visible, else "
        "cpu (default %(default)s)",
    )
    g_data.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input size in pixels (default: the preset's; 227 is the blog's)",
    )
    g_data.add_argument(
        "--subset",
        type=int,
        default=None,
        help="stratified, seeded sample of N images (default: the preset's; all for blog)",
    )
    g_data.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of split, shuffling, engine and trials (default %(default)s); the Keras "
        "Tuner engines draw as Keras Tuner does, one integer per parameter, so in the "
        "built-in space seeds 4 apart share most trials: for independent searches "
        "take seeds far apart",
    )
    g_data.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="validation share of train/ (of all images where there is no test/ folder); "
        "validation chooses trials, epochs and the winner (default %(default)s)",
    )
    g_data.add_argument(
        "--test-fraction",
        type=float,
        default=DEFAULT_TEST_FRACTION,
        help="test share where the data has no test/ folder; test is read only after the "
        "search, to judge (default %(default)s)",
    )
    g_data.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="image cache root (default: a cache folder beside the data)",
    )
    g_data.add_argument("--augment", action="store_true", help="random flips and crops in training")
    g_search = p.add_argument_group("search", "the trials and their budget")
    g_search.add_argument(
        "--trials", type=int, default=30, help="trials to run (default %(default)s)"
    )
    g_search.add_argument(
        "--engine",
        choices=ENGINES,
        default="hyperband",
        help="hyperband/random/bayesian: Keras Tuner; optuna: TPE + Hyperband "
        "pruner (default %(default)s)",
    )
    g_search.add_argument(
        "--max-epochs",
        type=int,
        default=20,
        help="epochs of a full trial and of the baseline (default %(default)s)",
    )
    g_search.add_argument(
        "--factor", type=int, default=3, help="Hyperband reduction factor (default %(default)s)"
    )
    g_search.add_argument("--space", type=Path, default=None, help="TOML file overriding the space")
    g_search.add_argument("--batch-size", type=int, default=125, help="batch size (default 125)")
    g_search.add_argument(
        "--width",
        type=float,
        default=None,
        help="multiplier of the convolution filters (default: the preset's; 1.0 is the blog's)",
    )
    g_search.add_argument(
        "--time-budget",
        default=None,
        help="e.g. 45m: start no trial that cannot finish in time (default: none)",
    )
    g_search.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        help="do not train the blog's configuration as the baseline",
    )
    g_search.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="stop after this many consecutive failed trials (default %(default)s)",
    )
    g_search.add_argument(
        "--trials-per-worker",
        type=int,
        default=5,
        help="trials per trial process before a fresh one: memory stays flat (default %(default)s)",
    )
    g_evidence = p.add_argument_group(
        "evidence", "the verdict: select on folds of train, judge on test, refit"
    )
    g_evidence.add_argument(
        "--confirm",
        type=int,
        default=3,
        metavar="K",
        help="seeds of the evidence phase: the top configurations are retrained with K seeds "
        "to choose the winner (seed k validated on fold k of train), then the winner and the "
        "baseline with K fresh "
        "seeds, scored on test (default %(default)s; 0 skips it; a larger K continues a run)",
    )
    g_evidence.add_argument(
        "--confirm-top",
        type=int,
        default=3,
        metavar="M",
        help="how many of the search's best configurations compete over seeds for the win; 1 "
        "keeps the search's best (default %(default)s; a larger M continues a run)",
    )
    g_evidence.add_argument(
        "--refit",
        choices=REFIT_MODES,
        default="trainval",
        help="trainval: ship the winner retrained on train + validation for the epochs its "
        "judge runs chose, scored once on test; all: the same on train + validation + test "
        "once the verdict is settled (scikit-learn's refit=True: every labelled image trains "
        "it, so its accuracy is estimated by the judge runs, not measured); none: ship its "
        "best judge run (default %(default)s)",
    )
    g_evidence.add_argument(
        "--refit-seeds",
        type=int,
        metavar="R",
        help="refits of the winner, each with its own seed, whose class probabilities the "
        "shipped model averages: steadier and more accurate than one refit, for R times the "
        f"refit's training, SavedModel and latency (default {DEFAULT_REFIT_SEEDS}; 1 with "
        "--select smallest, which asks for a small model; a larger R continues a run)",
    )
    g_evidence.add_argument(
        "--tta",
        choices=TTA_MODES,
        default=DEFAULT_TTA,
        help="flip: the shipped model scores each image and its mirror image and averages the "
        "two (as AlexNet did at test time; +1.4 points on average, bench/README.md), for twice "
        "the serving compute; none: one look, for classes a mirror image changes (text, left "
        "from right) (default %(default)s)",
    )
    g_evidence.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        metavar="POINTS",
        help="a difference whose whole 95%% interval lies within +-POINTS is 'equivalent' "
        "(default %(default)s)",
    )
    g_evidence.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="accuracy",
        help="accuracy,params: with --engine optuna, a multi-objective study (validation "
        "accuracy up, parameter count down; no pruner, every trial trains --max-epochs); "
        "Keras Tuner's engines refuse it (default %(default)s)",
    )
    g_evidence.add_argument(
        "--select",
        choices=SELECTS,
        default="best",
        help="smallest: also judge the smallest configuration of the accuracy-size front "
        "whose search score is within --margin of the winner's, with the same fresh seeds, "
        "and ship it when it is equivalent to the winner (default %(default)s)",
    )
    g_output = p.add_argument_group("output", "where results go and what is printed")
    g_output.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="default runs/<engine>-<size>px-<hash of the settings>",
    )
    g_output.add_argument("--runs-root", type=Path, default=Path("runs"), help=argparse.SUPPRESS)
    g_output.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write TensorBoard logs to RUN_DIR/tensorboard as epochs end: curves of every "
        "training and the HParams dashboard (default on)",
    )
    g_output.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    g_output.add_argument("--debug", action="store_true", help="show tracebacks")
    g_hardware = p.add_argument_group("hardware", "precision, compiler and devices of each trial")
    g_hardware.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        metavar="PRECISION",
        help="auto, float32, mixed_float16 or mixed_bfloat16; auto: mixed_float16 on a GPU, "
        "mixed_bfloat16 on a CPU with AMX or AVX-512 BF16, float32 on other CPUs; the plan says "
        "which and why "
        "(default %(default)s)",
    )
    g_hardware.add_argument(
        "--xla",
        choices=XLA_MODES,
        default="auto",
        help="auto: on for a GPU, off for a CPU (40%% slower there) (default %(default)s)",
    )
    g_hardware.add_argument(
        "--strategy",
        choices=("none", "mirrored"),
        default="none",
        help="mirrored: each trial on all visible GPUs (tf.distribute.MirroredStrategy); "
        "--batch-size is per GPU (default %(default)s)",
    )
    g_hardware.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        metavar="N",
        help="without a GPU, split the CPU into N logical devices for --strategy mirrored: "
        "tries the multi-GPU code path on a laptop, not faster (default %(default)s)",
    )
    g_scale = p.add_argument_group(
        "scale-out", "several processes or machines on one search (see README)"
    )
    g_scale.add_argument(
        "--storage",
        default=None,
        help="Optuna study storage, e.g. postgresql://user@host/db (password from $PGPASSWORD, "
        "or the whole URL in $ALEXNET_TUNER_STORAGE); default: a journal file in the run "
        "directory",
    )
    g_scale.add_argument(
        "--study", default="alexnet-tuner", help="Optuna study name (default %(default)s)"
    )
    g_scale.add_argument(
        "--role",
        choices=("chief", "worker"),
        default="chief",
        help="worker: join a running search (same options and --run-dir) and train its trials; "
        "the chief runs the baseline, exports and reports (Optuna: and trains too)",
    )
    g_scale.add_argument(
        "--oracle",
        default=None,
        metavar="HOST:PORT",
        help="Keras Tuner chief/worker mode: the chief serves its oracle there (gRPC), workers "
        "connect to it; KERASTUNER_TUNER_ID names a worker (stable across restarts)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    interrupt.die_with_parent()  # started by search.launch: ends with it
    interrupt.install()
    try:
        return _main(args, argv)
    except interrupt.Interrupted as exc:
        print(resume_line(exc, args, argv), flush=True)
        return exc.exit_code


def options(args: argparse.Namespace, budget: float | None) -> SearchOptions:
    """The parsed command line as resolved options: the preset (``auto`` by the GPUs) fills
    what was left unset."""
    preset, reason = auto_preset(visible_gpus()) if args.preset == "auto" else (args.preset, "")
    sizes = apply_preset(preset, vars(args))
    if args.refit_seeds is None:  # --select smallest asks for a small model: one refit
        sizes["refit_seeds"] = 1 if args.select == "smallest" else DEFAULT_REFIT_SEEDS
    return SearchOptions(
        **{**vars(args), **sizes, "time_budget": budget, "preset": preset}, preset_reason=reason
    )


def resume_line(exc: interrupt.Interrupted, args: argparse.Namespace, argv: list[str]) -> str:
    """The one line an interrupted search prints: what is kept and the command that resumes."""
    try:
        where = f"{options(args, None).resolved_run_dir()}"
    except Exception:
        where = "the run directory"
    width = shutil.get_terminal_size().columns
    message = (
        f"interrupted by {exc.name}: finished trials and the running one's last finished epoch "
        f"are saved in {where}; resume with:"
    )
    command = shell_lines(["python", "-m", "search.run", *argv], width)
    text = textwrap.fill(message, width, break_long_words=False, break_on_hyphens=False)
    return f"{text}\n{command}"


def shell_lines(words: list[str], width: int) -> str:
    """A command a shell reads as one, in lines of at most ``width`` characters where its words
    allow: continued with a backslash, so it can be pasted as printed."""
    lines: list[str] = []
    line = ""
    for word in (shlex.quote(w) for w in words):
        if line and len(line) + 1 + len(word) + 2 > width:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def _main(args: argparse.Namespace, argv: list[str]) -> int:
    console = Console()
    # a terminal: lines wrap at word boundaries to its width; a pipe or a log file: one line
    # each, whole, for grep and for the reader who sets their own width
    console.soft_wrap = not console.is_terminal
    try:
        budget = parse_duration(args.time_budget) if args.time_budget else None
        opts = options(args, budget)
        from search.session import Search, SearchFailed
        from search.trial.client import TrialProcessDied

        try:
            return Search(opts, argv, console).run()
        except (SearchFailed, TrialProcessDied) as exc:
            if args.debug:
                raise
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except (OptionError, SpaceError, DataError, RunDirError, StorageError, NoRoom) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full or read-only disk under the run directory or the cache
        room = no_room(exc, Path(args.run_dir) if args.run_dir else Path.cwd(), fix=ROOM_FIX)
        if room is None or args.debug:
            raise
        print(f"error: {room}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
