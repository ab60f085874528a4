"""``python -m search.export RUN_DIR``: export the best trial as a SavedModel, and prove it.

The best trial's checkpoint (the weights that earned its score) is loaded into a fresh model,
evaluated on the validation set, exported with ``model.export`` to ``RUN_DIR/best_model/``
(serving signature ``serve``: uint8 RGB images, shape ``(None, S, S, 3)``; the model scales
them to [0, 1] itself) and saved
as ``RUN_DIR/best_model.keras``. A fresh process then loads the SavedModel with
``tf.saved_model.load`` and scores the same images; ``RUN_DIR/export.json`` records both
accuracies, which must be equal.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.files import file_digest
from data_pipeline.pipeline import DataConfig, PreparedData, prepare
from search import results as res
from search.rundir import checkpoint_path, now_iso, read_json, write_json_atomic
from search.space import SEARCHED, resolve


class ExportError(RuntimeError):
    """The run has nothing exportable, or the export check failed."""


def _data(run_dir: Path) -> tuple[dict[str, Any], PreparedData]:
    config = read_json(run_dir / "config.json")
    if config is None:
        raise ExportError(f"{str(run_dir)!r} has no config.json: not a search run directory.")
    o = config["options"]
    data = prepare(
        DataConfig(
            data_dir=Path(config["identity"]["data_dir"]),
            image_size=o["image_size"],
            seed=o["seed"],
            val_fraction=o["val_fraction"],
            subset=o["subset"],
            cache_root=Path(o["cache_dir"]) if o["cache_dir"] else None,
        )
    )
    return config, data


def _batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield np.ascontiguousarray(images[start : start + batch_size])  # uint8, as trained


def _write_predictions(path: Path, data: PreparedData, probs: np.ndarray) -> None:
    """Per-image validation predictions of the exported model (confusion matrix, image grid)."""
    import pandas as pd

    files = [f for f in data.cached.files if f.split == "validation"]
    predicted = np.argmax(probs, axis=1)
    frame = pd.DataFrame(
        {
            "path": [f.path for f in files],
            "label": [f.label for f in files],
            "predicted": [data.classes[i] for i in predicted],
            "probability": probs[np.arange(len(files)), predicted],
        }
    )
    frame.to_csv(path, index=False)


def export_run(run_dir: Path) -> dict[str, Any]:
    import keras

    from models.alexnet import build_alexnet, compile_alexnet
    from models.checkpoint import load_weights

    config, data = _data(run_dir)
    best = res.best_trial(res.load_trials(run_dir))
    if best is None:
        raise ExportError(f"{str(run_dir)!r} has no completed trial to export.")
    trial_id = str(best["trial_id"])
    ckpt = checkpoint_path(run_dir, trial_id)
    if not ckpt.exists():
        raise ExportError(f"the checkpoint of the best trial {trial_id} is missing ({ckpt}).")
    o = config["options"]
    params = resolve(
        {k: best[k] for k in SEARCHED},
        image_size=o["image_size"],
        width=o["width"],
        num_classes=len(data.classes),
    )
    keras.mixed_precision.set_global_policy("float32")
    model = build_alexnet(params)
    load_weights(model, ckpt)
    compile_alexnet(model, params, jit_compile=False)
    x_val, y_val = data.arrays("validation")
    probs = np.concatenate([model.predict_on_batch(b) for b in _batches(x_val, o["batch_size"])])
    acc_memory = float(np.mean(np.argmax(probs, axis=1) == y_val))
    _write_predictions(run_dir / "validation_predictions.csv", data, probs)

    out = run_dir / "best_model"
    shutil.rmtree(out, ignore_errors=True)
    model.export(str(out), format="tf_saved_model", verbose=False)
    (out / "labels.json").write_text(
        json.dumps(
            {
                "classes": list(data.classes),
                "image_size": params.image_size,
                "input": "uint8 RGB (None, S, S, 3), resized as in training; signature 'serve'",
                "trial_id": trial_id,
            },
            indent=2,
        )
    )
    keras_path = run_dir / "best_model.keras"
    model.save(keras_path)
    np.save(run_dir / ".probs-in-memory.npy", probs)

    verify = subprocess.run(
        [sys.executable, "-m", "search.export", "--verify", str(run_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if verify.returncode != 0:
        raise ExportError(f"reloading the export failed:\n{verify.stderr[-2000:]}")
    reloaded = json.loads(verify.stdout.strip().splitlines()[-1])
    (run_dir / ".probs-in-memory.npy").unlink(missing_ok=True)
    files = [*sorted(p for p in out.rglob("*") if p.is_file()), keras_path]
    record = {
        "source_trial": trial_id,
        "params": params.to_dict(),
        "val_accuracy_trial": float(best["val_accuracy"]),
        "val_accuracy_in_memory": acc_memory,
        "val_accuracy_reloaded": reloaded["val_accuracy_reloaded"],
        "val_accuracy_keras_reloaded": reloaded["val_accuracy_keras_reloaded"],
        "max_probability_difference": reloaded["max_probability_difference"],
        "equal": acc_memory == reloaded["val_accuracy_reloaded"],
        "n_validation": len(y_val),
        "classes": list(data.classes),
        "latency_ms_per_image": reloaded["latency_ms_per_image"],
        "saved_model": str(out),
        "keras_file": str(keras_path),
        "size_bytes": sum(p.stat().st_size for p in files),
        "files": {str(p.relative_to(run_dir)): file_digest(p, algorithm="sha256") for p in files},
        "created_at": now_iso(),
    }
    write_json_atomic(run_dir / "export.json", record)
    return record


def verify_run(run_dir: Path) -> dict[str, Any]:
    """In a fresh process: score the SavedModel (and the .keras copy) on the validation set."""
    import keras
    import tensorflow as tf

    config, data = _data(run_dir)
    batch = config["options"]["batch_size"]
    x_val, y_val = data.arrays("validation")
    loaded = tf.saved_model.load(str(run_dir / "best_model"))
    serve = loaded.signatures["serve"]
    out_key = next(iter(serve.structured_outputs))
    probs = np.concatenate([serve(tf.constant(b))[out_key].numpy() for b in _batches(x_val, batch)])
    acc = float(np.mean(np.argmax(probs, axis=1) == y_val))
    from models.lrn import LocalResponseNormalization

    keras_model = keras.saving.load_model(  # safe_mode stays on
        run_dir / "best_model.keras",
        custom_objects={"alexnet_tuner>LocalResponseNormalization": LocalResponseNormalization},
    )
    kprobs = np.concatenate([keras_model.predict_on_batch(b) for b in _batches(x_val, batch)])
    memory = np.load(run_dir / ".probs-in-memory.npy")
    one = next(_batches(x_val[:1], 1))
    serve(tf.constant(one))
    t0 = time.perf_counter()
    for _ in range(20):
        serve(tf.constant(one))
    return {
        "val_accuracy_reloaded": acc,
        "val_accuracy_keras_reloaded": float(np.mean(np.argmax(kprobs, axis=1) == y_val)),
        "max_probability_difference": float(np.max(np.abs(probs - memory))),
        "latency_ms_per_image": (time.perf_counter() - t0) / 20 * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m search.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.verify:
        print(json.dumps(verify_run(args.run_dir)))
        return 0
    try:
        record = export_run(args.run_dir)
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    verdict = "passed" if record["equal"] else "FAILED"
    print(
        f"export check {verdict}: trial {record['source_trial']} val_accuracy in memory "
        f"{record['val_accuracy_in_memory']:.4f}, reloaded SavedModel "
        f"{record['val_accuracy_reloaded']:.4f} ({record['n_validation']} images); "
        f"{record['saved_model']}"
    )
    return 0 if record["equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
