"""``python -m bench.peer``: the same Hyperband search with stock Keras Tuner and with this tool.

Both sides get the same training and validation images (this tool's split of ``--data-dir``,
undecodable files left out), the same model builder (``models.alexnet``), the same Hyperband
settings, seed and number of trials, and each runs alone in processes of its own. They
alternate (stock, ours, stock, ours, ... for ``--repeats``) so that a machine that slows down
hits both alike; medians are printed when repeated.

Stock Keras Tuner is written as its documentation teaches: class folders read with
``keras.utils.image_dataset_from_directory``, ``.cache().prefetch()``, a ``build(hp)`` function
given to ``keras_tuner.Hyperband``, ``tuner.search(train, validation_data=val, ...)``. The one
addition is ``tuner.oracle.max_trials``, so that both stop after ``--trials`` trials (with the
defaults one Hyperband iteration is exactly 30 trials and it changes nothing).

Measured on each side:
- **search phase**: stock, the ``tuner.search`` call (its first epoch also decodes the JPEGs
  into its cache); ours, from the end of the baseline to the end of the last trial (our images
  were decoded before the baseline: that time is in "whole command");
- **whole command**: ours includes data preparation, the baseline, the export check and the
  report;
- epochs trained and seconds per epoch (search phase / epochs);
- peak RSS of the whole process tree and of its largest process (``/proc``, every 0.2 s);
- peak disk of the tuner's directory (ours: run directory and image cache), every second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from search.rundir import disk_usage_mb
from search.trial.process import memory_mb


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    trials: int
    image_size: int
    width: float
    batch_size: int
    max_epochs: int
    factor: int
    seed: int
    subset: int | None


# ----------------------------------------------------------------------------- monitoring
def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


class Monitor:
    """Peak RSS of a process tree and peak disk of some folders, sampled in a thread."""

    def __init__(self, pid: int, folders: Sequence[Path]) -> None:
        self.pid, self.folders = pid, list(folders)
        self.peak_tree_mb = self.peak_process_mb = self.peak_disk_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_disk = 0.0
        while not self._stop.wait(0.2):
            tree, pids, i = _children(), [self.pid], 0
            while i < len(pids):
                pids += tree.get(pids[i], [])
                i += 1
            rss = [memory_mb("VmRSS", p) or 0.0 for p in pids]
            self.peak_tree_mb = max(self.peak_tree_mb, sum(rss))
            self.peak_process_mb = max(self.peak_process_mb, max(rss))
            if time.monotonic() - last_disk >= 1.0:
                last_disk = time.monotonic()
                disk = sum(disk_usage_mb(f) for f in self.folders if f.exists())
                self.peak_disk_mb = max(self.peak_disk_mb, disk)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "peak_rss_tree_mb": round(self.peak_tree_mb),
            "peak_rss_process_mb": round(self.peak_process_mb),
            "peak_disk_mb": round(self.peak_disk_mb, 1),
        }


def _run(cmd: list[str], folders: Sequence[Path], log: Path) -> tuple[float, dict[str, float]]:
    """Run ``cmd`` alone, watched; its wall time and peaks. A failure stops the benchmark."""
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        monitor = Monitor(proc.pid, folders)
        code = proc.wait()
    wall = time.perf_counter() - t0
    peaks = monitor.stop()
    if code != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed with exit code {code}; see {log}")
    return wall, peaks


def steady_epoch_seconds(trials: list[list[float]]) -> float:
    """Median over trials of an epoch's time without the first epoch's tracing: the same
    estimate as the trial process's ``train`` + ``validation`` costs (``TrialTiming``)."""
    per_trial = []
    for epochs in trials:
        if len(epochs) > 1:
            excess = max(0.0, epochs[0] - statistics.median(epochs[1:]))
            per_trial.append((sum(epochs) - excess) / len(epochs))
    return float(statistics.median(per_trial)) if per_trial else float("nan")


# --------------------------------------------------------------------------------- stock
def stock_folders(s: Settings, root: Path) -> Path:
    """Class folders (symbolic links) holding this tool's training and validation images of
    ``s``, the layout ``image_dataset_from_directory`` reads."""
    from data_pipeline.pipeline import DataConfig, prepare

    data = prepare(
        DataConfig(
            data_dir=s.data_dir,
            image_size=s.image_size,
            seed=s.seed,
            subset=s.subset,
            cache_root=root / "split-cache",
        )
    )
    classes = data.classes
    for split in ("train", "validation"):
        _, labels = data.cached.split(split)
        for path, label in zip(data.paths(split), labels, strict=True):
            folder = root / "stock-data" / split / classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).symlink_to(path.resolve())
    shutil.rmtree(root / "split-cache")
    return root / "stock-data"


def stock_hypermodel(s: Settings) -> Any:
    """``build(hp)`` as a Keras Tuner user writes it, with this tool's builder: the same
    names, ranges and order as this tool's space, so the oracle draws alike."""
    import keras_tuner as kt

    from models.alexnet import AlexNetParams, build_alexnet, compile_alexnet
    from search.space import DEFAULT_SPACE, FloatParam, IntParam

    space = {p.name: p for p in DEFAULT_SPACE}

    def build(hp: kt.HyperParameters) -> Any:
        d, u, lr = space["dropout"], space["dense_units"], space["learning_rate"]
        assert isinstance(d, FloatParam) and isinstance(u, IntParam)
        assert isinstance(lr, FloatParam)
        params = AlexNetParams(
            dropout=hp.Float("dropout", d.low, d.high),
            lrn=hp.Boolean("lrn"),
            dense_units=hp.Int("dense_units", u.low, u.high, step=u.step),
            learning_rate=hp.Float("learning_rate", lr.low, lr.high, sampling="log"),
            image_size=s.image_size,
            width=s.width,
        )
        model = build_alexnet(params)
        # Keras' own Adam, as a Keras Tuner user compiles: stock means stock
        compile_alexnet(model, params, jit_compile=False, fused=False)
        return model

    return build


def stock_tuner(s: Settings, directory: Path, build: Any, *, overwrite: bool = False) -> Any:
    """Stock ``kt.Hyperband`` over ``build`` as a Keras Tuner user constructs it, with the
    settings' budget and seed (one home for what "stock" means in the benchmarks and tests)."""
    import keras_tuner as kt

    tuner = kt.Hyperband(
        build,
        objective="val_accuracy",
        max_epochs=s.max_epochs,
        factor=s.factor,
        seed=s.seed,
        directory=str(directory),
        project_name="stock",
        overwrite=overwrite,
    )
    tuner.oracle.max_trials = s.trials
    return tuner


def stock_search(s: Settings, images: Path, project: Path, out: Path) -> None:
    """The search as a Keras Tuner user writes it (run in a process of its own)."""
    import keras
    import tensorflow as tf

    size = (s.image_size, s.image_size)
    t_start = time.perf_counter()
    train = keras.utils.image_dataset_from_directory(
        images / "train", image_size=size, batch_size=s.batch_size, seed=s.seed
    )
    val = keras.utils.image_dataset_from_directory(
        images / "validation", image_size=size, batch_size=s.batch_size, shuffle=False
    )
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    val = val.cache().prefetch(tf.data.AUTOTUNE)

    build = stock_hypermodel(s)

    epoch_seconds: list[list[float]] = []  # per trial

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            epoch_seconds.append([])

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            epoch_seconds[-1].append(time.perf_counter() - self.t0)

    tuner = stock_tuner(s, project, build)
    t0 = time.perf_counter()
    tuner.search(train, validation_data=val, callbacks=[EpochTimer()], verbose=0)
    search_s = time.perf_counter() - t0
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id))
    out.write_text(
        json.dumps(
            {
                "search_seconds": search_s,
                "setup_seconds": t0 - t_start,
                "epochs": sum(len(e) for e in epoch_seconds),
                "steady_epoch_s": steady_epoch_seconds(epoch_seconds),
                "trials": len(trials),
                "best_val_accuracy": max((t.score or 0.0) for t in trials),
                "values": [
                    {k: t.hyperparameters.values[k] for k in ("dropout", "lrn", "dense_units")}
                    for t in trials
                ],
            }
        )
    )


def run_stock(s: Settings, images: Path, work: Path, i: int) -> dict[str, Any]:
    project = work / f"stock-{i}"
    result = work / f"stock-{i}.json"
    cmd = [sys.executable, "-m", "bench.peer", "--_stock", str(images), str(project), str(result)]
    wall, peaks = _run(cmd + _settings_args(s), [project], work / f"stock-{i}.log")
    r = json.loads(result.read_text())
    shutil.rmtree(project, ignore_errors=True)
    return {
        "search_s": r["search_seconds"],
        "whole_s": wall,
        "epochs": r["epochs"],
        "steady_epoch_s": r["steady_epoch_s"],
        "trials": r["trials"],
        "best_val_accuracy": r["best_val_accuracy"],
        "values": r["values"],
        **peaks,
    }


# ----------------------------------------------------------------------------------- ours
def run_ours(s: Settings, work: Path, i: int) -> dict[str, Any]:
    import pandas as pd

    from search import results as res

    run_dir, cache = work / f"ours-{i}", work / f"ours-{i}-cache"
    cmd = [sys.executable, "-m", "search.run", "--engine", "hyperband", *_settings_args(s)]
    cmd += ["--confirm", "0", "--run-dir", str(run_dir), "--cache-dir", str(cache)]
    wall, peaks = _run(cmd, [run_dir, cache], work / f"ours-{i}.log")
    trials = res.load_trials(run_dir)
    search = res.search_trials(trials)
    ended = pd.to_datetime(trials.set_index("trial_id")["ended_at"])
    baseline_end = ended[res.BASELINE_ID]
    search_s = (ended[search["trial_id"]].max() - baseline_end).total_seconds()
    epochs = int((search["epochs"] - search["initial_epoch"]).sum())
    costs = res.load_costs(run_dir)
    costs = costs[costs["trial_id"].isin(search["trial_id"])]
    values = search.sort_values("trial_id", key=lambda c: c.astype(int))
    wide = costs.pivot_table(index="trial_id", columns="component", values="seconds")
    steady = (wide["train"] + wide["validation"]) / (
        search.set_index("trial_id")["epochs"] - search.set_index("trial_id")["initial_epoch"]
    )
    multi = search.set_index("trial_id").eval("epochs - initial_epoch") > 1
    out = {
        "search_s": search_s,
        "whole_s": wall,
        "epochs": epochs,
        "trials": len(search),
        "best_val_accuracy": float(search["val_accuracy"].max()),
        "steady_epoch_s": float(steady[multi[multi].index].median()),
        "values": values[["dropout", "lrn", "dense_units"]].to_dict("records"),
        "costs": res.cost_summary(costs).to_dict("records"),
        **peaks,
    }
    for name in ("trials.csv", "costs.csv"):  # kept for a closer look
        shutil.copy(run_dir / name, work / f"ours-{i}-{name}")
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------- report
def _settings_args(s: Settings) -> list[str]:
    """The settings as command-line flags, which both ``search.run`` and this module take."""
    args: list[str] = []
    for f in fields(s):
        value = getattr(s, f.name)
        if value is not None:
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    return args


def same_trials(stock: list[dict[str, Any]], ours: list[dict[str, Any]]) -> int:
    """How many trials of the first round (drawn by the oracle from its seed, before any
    score can differ) have the same values on both sides."""
    same = 0
    for a, b in zip(stock, ours, strict=False):
        if (
            abs(float(a["dropout"]) - float(b["dropout"])) < 1e-9
            and bool(a["lrn"]) == bool(b["lrn"])
            and int(a["dense_units"]) == int(b["dense_units"])
        ):
            same += 1
    return same


def table(stock: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    def med(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(r[key] for r in rows))

    lines = [
        "| measure | stock Keras Tuner | alexnet-tuner | ours / stock |",
        "|---|---|---|---|",
    ]
    for key, label, fmt in (
        ("search_s", "search phase (s)", "{:,.0f}"),
        ("epochs", "epochs trained", "{:,.0f}"),
        ("epoch_s", "seconds per epoch (search phase / epochs)", "{:.2f}"),
        ("steady_epoch_s", "steady epoch, median over trials (s)", "{:.3f}"),
        ("whole_s", "whole command (s)", "{:,.0f}"),
        ("peak_rss_process_mb", "peak RSS, largest process (MB)", "{:,.0f}"),
        ("peak_rss_tree_mb", "peak RSS, all processes (MB)", "{:,.0f}"),
        ("peak_disk_mb", "peak disk (MB)", "{:,.1f}"),
        ("best_val_accuracy", "best validation accuracy", "{:.4f}"),
    ):
        a, b = med(stock, key), med(ours, key)
        ratio = f"{b / a:.3f}" if a else "-"
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.peer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, required=True, help="a folder of cat.N/dog.N JPEGs")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=125)
    p.add_argument("--max-epochs", type=int, default=20)
    p.add_argument("--factor", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=1, help="alternating runs of each side")
    p.add_argument("--work-dir", type=Path, default=Path("bench-peer"))
    p.add_argument("--out", type=Path, help="write the measurements here as JSON")
    p.add_argument("--_stock", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    s = Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)})
    s = replace(s, data_dir=s.data_dir.resolve(), subset=s.subset or None)
    if args._stock:
        stock_search(s, *args._stock)
        return 0
    work = args.work_dir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = stock_folders(s, work)
    stock: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    for i in range(args.repeats):
        for side, rows in (("stock", stock), ("ours", ours)):
            print(f"{datetime.now():%H:%M:%S} repeat {i + 1}: {side} ...", flush=True)
            r = run_stock(s, images, work, i) if side == "stock" else run_ours(s, work, i)
            r["epoch_s"] = r["search_s"] / max(1, r["epochs"])
            rows.append(r)
            print(
                f"  search phase {r['search_s']:.0f} s, {r['epochs']} epochs, "
                f"{r['epoch_s']:.2f} s/epoch, peak RSS {r['peak_rss_process_mb']:.0f} MB",
                flush=True,
            )
    print(f"\n{s}\n")
    print("\n".join(table(stock, ours)))
    same = same_trials(stock[0]["values"], ours[0]["values"])
    print(f"\ntrials with the same values in the same order: {same} of {len(ours[0]['values'])}")
    print("\nalexnet-tuner's per-trial costs (seconds; first repeat):")
    for c in ours[0]["costs"]:
        print(
            f"  {c['component']:<15} total {c['total']:8.1f}  mean {c['mean']:7.3f}"
            f"  median {c['median']:7.3f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "settings": {**vars(s), "data_dir": str(s.data_dir)},
                    "stock": stock,
                    "ours": ours,
                },
                indent=2,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
