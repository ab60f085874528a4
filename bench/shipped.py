"""``python -m bench.shipped RUN_DIR``: the model this tool ships against the one stock Keras Tuner
ships from the same search, both scored on photos neither saw.

Stock Keras Tuner is used as its users ship a model: the run's training and validation images
(its whole pool of labelled training photos) in class folders, read with
``image_dataset_from_directory(validation_split=0.1, subset="both")``, ``kt.Hyperband`` with the
same builder, settings, seed and trial count as the run, then ``tuner.get_best_models(1)[0]``.
This tool's shipped model is the run's export (``best_model.keras``; with the defaults the
winner refitted on train + validation). Both score the run's *test* images, which neither
trained or chose on, each through its own preprocessing (stock: ``decode_image`` and a float
bilinear resize, as ``image_dataset_from_directory`` does; ours: the training cache); the
difference is paired per image (same photos), with a 95% normal interval.

``--holdout DIR`` asks the question as issue 21's check does: a folder of further labelled photos
(``cat.N.jpg`` / ``dog.N.jpg``) that neither tool was given. Stock then searches on *every* photo
the run had (train, validation and test: 90% of them train, as ``validation_split=0.1`` gives),
ours is the run's export as a user has it, and both score DIR: stock through
``image_dataset_from_directory``'s decoding, ours through the SavedModel's ``serve_bytes``
signature (the files' bytes, decoded in the graph). Without it, stock gets the run's train +
validation pool only, since the run's test images are the ones scored: stock then trains on
fewer photos than our refit (1,439 against 1,598 on the 2k photos), with ``--holdout`` on more
(90% of the pool against our refit's 85% with the default split), as in the check.

The stock search runs in this process (a few GB); ``--stock-json`` reuses an earlier result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.peer import Settings, stock_hypermodel, stock_tuner
from search.rundir import RunConfig
from search.stats import Z95, accuracy_ci


def settings_of(run_dir: Path) -> Settings:
    config = RunConfig.read(run_dir)
    o = config.options
    return Settings(
        data_dir=Path(config.data_config.data_dir),
        trials=int(o["trials"]),
        image_size=config.image_size,
        width=float(config.width),
        batch_size=config.batch_size,
        max_epochs=int(o["max_epochs"]),
        factor=int(o["factor"]),
        seed=int(o["seed"]),
        subset=o.get("subset"),
    )


def holdout_images(folder: Path, classes: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """The labelled photos under ``folder`` (any depth; the label from the file name), sorted,
    and their class indices in ``classes``."""
    from data_pipeline.discover import IMAGE_EXTENSIONS, label_from_name

    paths, labels = [], []
    for path in sorted(folder.rglob("*")):
        label = label_from_name(path.name)
        if path.suffix.lower() in IMAGE_EXTENSIONS and label in classes:
            paths.append(path)
            labels.append(list(classes).index(label))
    if not paths:
        raise SystemExit(f"error: --holdout {folder}: no {'/'.join(classes)}.N.jpg photos in it.")
    return paths, np.asarray(labels)


def stock_shipped(
    s: Settings, run_dir: Path, work: Path, holdout: Path | None = None
) -> dict[str, Any]:
    """Stock Keras Tuner's search on the run's train + validation pool (with ``holdout``, on
    all the run's photos); its best model's per-image correctness on the run's test images (in
    the run's file order), or on ``holdout``'s."""
    import keras
    import tensorflow as tf

    from data_pipeline.pipeline import prepare

    config = RunConfig.read(run_dir)
    data = prepare(config.data_config)
    classes = data.classes
    pool = work / "stock-pool"
    shutil.rmtree(pool, ignore_errors=True)
    splits = ("train", "validation", "test") if holdout else ("train", "validation")
    for split in splits:
        _, labels = data.cached.split(split)
        for path, label in zip(data.paths(split), labels, strict=True):
            folder = pool / classes[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / path.name).symlink_to(path.resolve())
    size = (s.image_size, s.image_size)
    train, val = keras.utils.image_dataset_from_directory(
        pool,
        image_size=size,
        batch_size=s.batch_size,
        seed=s.seed,
        validation_split=0.1,
        subset="both",
    )
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    val = val.cache().prefetch(tf.data.AUTOTUNE)
    tuner = stock_tuner(s, work / "stock-project", stock_hypermodel(s), overwrite=True)
    t0 = time.perf_counter()
    tuner.search(train, validation_data=val, verbose=0)
    seconds = time.perf_counter() - t0
    model = tuner.get_best_models(1)[0]
    best = tuner.oracle.get_best_trials(1)[0]

    def load(path: tf.Tensor) -> tf.Tensor:  # what image_dataset_from_directory does
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(image, size, method="bilinear")

    if holdout:
        scored, y_test = holdout_images(holdout, classes)
    else:
        scored, y_test = data.paths("test"), data.cached.split("test")[1]
    paths = [str(p) for p in scored]
    test = tf.data.Dataset.from_tensor_slices(paths).map(load).batch(s.batch_size)
    predicted = np.argmax(model.predict(test, verbose=0), axis=1)
    return {
        "correct": (predicted == y_test).astype(int).tolist(),
        "trained_on": len(train.file_paths) if hasattr(train, "file_paths") else None,
        "pool": sum(data.split_size(split) for split in splits),
        "scored_on": str(holdout) if holdout else "the run's test images",
        "search_seconds": seconds,
        "best_trial": best.trial_id,
        "best_values": best.hyperparameters.values,
        "best_val_accuracy": best.score,
        "seed": s.seed,
    }


def ours_shipped(run_dir: Path, holdout: Path | None = None) -> dict[str, Any]:
    """The run's exported model on the run's test images, as ``export.json`` measured it; with
    ``holdout``, the SavedModel on those photos' bytes, as a user serves it."""
    import keras

    from data_pipeline.pipeline import prepare
    from models.alexnet import custom_objects

    config = RunConfig.read(run_dir)
    data = prepare(config.data_config)
    export = json.loads((run_dir / "export.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    if holdout:
        from search.predict import predict

        paths, y = holdout_images(holdout, data.classes)
        rows = predict(run_dir / "best_model", paths, signature="bytes")
        predicted = np.asarray([data.classes.index(r["label"]) if r["label"] else -1 for r in rows])
    else:  # the Keras file: the model as export.json scored it on the training cache's pixels
        model = keras.saving.load_model(
            run_dir / "best_model.keras",
            custom_objects=custom_objects(),
        )
        x, y = data.arrays("test")
        probs = np.concatenate(
            [model.predict_on_batch(x[i : i + 125]) for i in range(0, len(x), 125)]
        )
        predicted = np.argmax(probs, axis=1)
    return {
        "correct": (predicted == y).astype(int).tolist(),
        "claim": export.get("test_accuracy_reloaded"),  # the export's own test score
        "claim_n": export.get("n_test"),
        "source_run": export.get("source_run"),
        "trained_on_validation": export.get("trained_on_validation"),
        "verdict": summary.get("verdict"),
        "sentence": summary.get("sentence"),
        "winner": summary.get("winner", {}).get("params"),
    }


def paired(ours: Sequence[int], stock: Sequence[int]) -> dict[str, Any]:
    """Ours minus stock on the same images: points and a 95% normal interval."""
    d = np.asarray(ours, float) - np.asarray(stock, float)
    n = d.size
    half = Z95 * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return {
        "n": n,
        "points": 100 * float(d.mean()),
        "ci95": [100 * (float(d.mean()) - half), 100 * (float(d.mean()) + half)],
    }


def claim_check(claim: float, claim_n: int, correct: Sequence[int]) -> dict[str, Any]:
    """The export's claim (its accuracy on ``claim_n`` test images) against its accuracy on
    further photos: inside the claim's 95% interval or not, and the two estimates' difference
    (further minus claim, points) with a 95% normal interval for two independent samples.

    The first is what a reader checks by eye; it fails more often than 5% for an honest claim,
    since both numbers are noisy (about 12% at 240 and 402 images). The second says whether
    the two disagree by more than their noise."""
    here = float(np.mean(correct))
    n = len(correct)
    lo, hi = accuracy_ci(claim, claim_n)
    se = math.sqrt(claim * (1 - claim) / claim_n + here * (1 - here) / n)
    d = here - claim
    ci = (100 * (d - Z95 * se), 100 * (d + Z95 * se))
    return {
        "claim": claim,
        "claim_ci95": [lo, hi],
        "here": here,
        "inside": lo <= here <= hi,
        "points": 100 * d,
        "ci95": list(ci),
        "consistent": ci[0] <= 0 <= ci[1],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.shipped",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a finished run of search.run (exported)")
    p.add_argument("--work-dir", type=Path, default=Path("bench-shipped"))
    p.add_argument("--stock-json", type=Path, help="reuse this stock result instead of searching")
    p.add_argument(
        "--stock-seed",
        type=int,
        help="the stock search's seed (default: the run's); another seed is another draw of "
        "the stock tool's shipped model, for its spread",
    )
    p.add_argument(
        "--holdout",
        type=Path,
        help="score both on these further photos, which neither was given; stock then searches "
        "on all the run's photos",
    )
    p.add_argument("--out", type=Path, help="write both sides and the comparison as JSON")
    args = p.parse_args(argv)
    export = args.run_dir / "export.json"
    if export.exists() and json.loads(export.read_text()).get("trained_on_test"):
        print(
            f"error: {args.run_dir} shipped a --refit all model, which trained on the test "
            "images this comparison scores on; compare a run with --refit trainval (its "
            "default) instead.",
            file=sys.stderr,
        )
        return 2
    from search.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    run_dir = args.run_dir.resolve()
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    s = settings_of(run_dir)
    if args.stock_seed is not None:
        s = dataclasses.replace(s, seed=args.stock_seed)
    if args.stock_json:
        stock = json.loads(args.stock_json.read_text())
    else:
        stock = stock_shipped(s, run_dir, work, args.holdout)
        (work / "stock.json").write_text(json.dumps(stock, indent=2, default=str))
    ours = ours_shipped(run_dir, args.holdout)
    n = len(ours["correct"])
    lines = []
    for name, side in (("alexnet-tuner (shipped)", ours), ("stock Keras Tuner", stock)):
        acc = float(np.mean(side["correct"]))
        lo, hi = accuracy_ci(acc, n)
        lines.append(f"{name:<26} {acc:.4f} (95% CI {lo:.3f}-{hi:.3f}, n={n})")
    if args.holdout and ours.get("claim") is not None:
        c = claim_check(float(ours["claim"]), int(ours.get("claim_n") or 0), ours["correct"])
        ours["claim_check"] = c
        lo, hi = c["claim_ci95"]
        held = "inside" if c["inside"] else "OUTSIDE"
        dlo, dhi = c["ci95"]
        agree = "consistent with" if c["consistent"] else "NOT consistent with"
        lines.append(
            f"ours' claim {c['claim']:.4f} (95% CI {lo:.3f}-{hi:.3f}): {c['here']:.4f} here, "
            f"{held} it"
        )
        lines.append(
            f"here - claim: {c['points']:+.1f} points (95% CI {dlo:+.1f} to {dhi:+.1f}): "
            f"{agree} the claim"
        )
    diff = paired(ours["correct"], stock["correct"])
    lo, hi = diff["ci95"]
    lines.append(f"ours - stock: {diff['points']:+.1f} points (95% CI {lo:+.1f} to {hi:+.1f})")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(
            json.dumps({"ours": ours, "stock": stock, "difference": diff}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
