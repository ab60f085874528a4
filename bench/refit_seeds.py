"""``python -m bench.refit_seeds RUN_DIR --seeds 2,3``: the shipped model's spread over its seed.

A finished run ships its refit (the average of ``--refit-seeds`` refits): one draw of their
training seeds. Whether that model is as good as another tool's is a question about the
distribution of such draws. This benchmark copies the run once per extra draw, drops the copy's
refits, and runs the run's own command on the copy with only the refits' seeds moved
(selection and judge runs are reused, nothing else is retrained); each copy's export is then
scored on the run's test images as ``bench.shipped`` scores ours (with ``--holdout``, on those
photos as a user serves them). With ``--stock`` (``bench.shipped``'s ``stock.json`` files)
each draw is paired with each stock draw on the same images.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.shipped import ours_shipped, paired
from search.rundir import RunConfig


def refit_copy(run_dir: Path, dest: Path) -> Path:
    """``run_dir`` copied to ``dest`` without its refit (row, weights and predictions)."""
    from search.confirm import REFIT, load_confirm, predictions_path
    from search.results import replace_rows
    from search.rundir import checkpoint_path

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns("best_model*", "report.html"))
    table = load_confirm(dest)
    for run_id in table.loc[table["stage"] == REFIT, "run_id"].astype(str):
        replace_rows(dest / "confirm.csv", table, table.iloc[:0], key="run_id", value=run_id)
        table = load_confirm(dest)
        shutil.rmtree(checkpoint_path(dest, run_id).parent, ignore_errors=True)
        predictions_path(dest, run_id).unlink(missing_ok=True)
    return dest


def copy_argv(command: str, run_dir: Path) -> list[str]:
    """A run's recorded ``python -m search.run ...`` command as argv for ``run_dir`` (its copy):
    the copy's ``--run-dir`` comes last, and argparse keeps an option's last value, so it wins
    over whatever the run recorded (``--run-dir``, ``--run-dir=``, an abbreviation, or none)."""
    return [*shlex.split(command)[3:], "--run-dir", str(run_dir)]


def refit_with_seed(run_dir: Path, offset: int) -> int:
    """The run's command on ``run_dir`` (a copy), its refit's seed moved by ``offset``."""
    import search.trial.runner as runner
    from search.confirm import REFIT, confirm_seed
    from search.run import main

    def moved(seed: int, index: int, stage: str = "judge") -> int:
        return confirm_seed(seed + (offset if stage == REFIT else 0), index, stage)

    runner.confirm_seed = moved  # type: ignore[assignment]
    try:
        return main(copy_argv(RunConfig.read(run_dir).command, run_dir))
    finally:
        runner.confirm_seed = confirm_seed


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.refit_seeds", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a finished run whose export is a refit")
    p.add_argument("--seeds", default="1,2", help="refit seed offsets (0: the run's own)")
    p.add_argument("--work-dir", type=Path, default=Path("bench-refit-seeds"))
    p.add_argument("--stock", type=Path, nargs="*", default=[], help="bench.shipped stock.json")
    p.add_argument("--holdout", type=Path, help="score each draw on these photos instead")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    run_dir = args.run_dir.resolve()
    draws: list[dict[str, Any]] = []
    for offset in (int(s) for s in args.seeds.split(",")):
        if offset == 0:
            copy = run_dir
        else:
            copy = refit_copy(run_dir, args.work_dir.resolve() / f"refit-seed-{offset}")
            if refit_with_seed(copy, offset) != 0:
                raise SystemExit(f"the refit with seed offset {offset} failed: see {copy}")
        ours = ours_shipped(copy, args.holdout)
        draws.append({"offset": offset, "accuracy": float(np.mean(ours["correct"])), **ours})
        print(json.dumps({"offset": offset, "accuracy": draws[-1]["accuracy"]}), flush=True)
    accs = [d["accuracy"] for d in draws]
    print(f"ours over {len(accs)} refit seeds: " + ", ".join(f"{a:.4f}" for a in accs))
    if len(accs) > 1:
        print(f"  mean {statistics.mean(accs):.4f}, sd {statistics.stdev(accs):.4f}")
    stocks = [json.loads(s.read_text()) for s in args.stock]
    pairs = []
    for stock in stocks:
        acc = float(np.mean(stock["correct"]))
        print(f"stock (seed {stock.get('seed', 'the run')}): {acc:.4f}")
        pairs += [paired(d["correct"], stock["correct"])["points"] for d in draws]
    if pairs:
        print(
            f"ours - stock over {len(pairs)} pairs of draws: mean {statistics.mean(pairs):+.1f} "
            f"points (each: {', '.join(f'{x:+.1f}' for x in pairs)})"
        )
    if args.out:
        args.out.write_text(json.dumps({"ours": draws, "stock": stocks}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
