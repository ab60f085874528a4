"""``python -m search.export RUN_DIR``: export the best model as a SavedModel, and prove it.

The model is the confirmed winner's refit on train + validation (``confirm.csv``; with
``--refit none`` or before the refit has finished, the winner's judge run with the best
validation accuracy), or, for a run without confirmation, the best search trial. Its checkpoint
is loaded into a fresh model, scored on the validation and test sets,
exported to ``RUN_DIR/best_model/`` with two serving signatures (``search.serving``: ``serve``
takes uint8 RGB images ``(None, S, S, 3)``, ``serve_bytes`` encoded image files), with its model
card (``search.model_card``), and saved as ``RUN_DIR/best_model.keras``. A fresh process then
loads the SavedModel with ``tf.saved_model.load`` and scores the same images, and the test set
again through ``serve_bytes`` from the original files; ``RUN_DIR/export.json`` records the
accuracies of both (which must be equal) and how far ``serve_bytes`` agrees with the training
path (which must decode every test file and give the same label on at least 99.5% of them,
borderline images aside: ``search.serving.agreement``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from data_pipeline.discover import manifest
from data_pipeline.errors import DataError
from data_pipeline.files import NoRoom, file_digest, no_room
from data_pipeline.pipeline import PreparedData, prepare
from models.alexnet import (
    AlexNetParams,
    average_of,
    build_float32,
    compile_alexnet,
    custom_objects,
)
from search import interrupt
from search import results as res
from search.confirm import (
    REFIT,
    averaged_epochs,
    load_confirm,
    params_of,
    refit_seed_count,
    refit_splits,
    run_evidence,
    shipped_pick,
    shipped_runs,
    tta_of,
)
from search.model_card import build_card, write_card
from search.pareto import front_records
from search.quiet import import_tensorflow_quietly
from search.rundir import (
    RunConfig,
    RunDirError,
    check_data,
    checkpoint_path,
    is_run_dir,
    locked,
    now_iso,
    write_json_atomic,
)
from search.serving import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    agreement,
    export_saved_model,
    score_files,
    skew_problems,
)
from search.space import resolve


class ExportError(RuntimeError):
    """The run has nothing exportable, or the export check failed."""


def _data(run_dir: Path) -> tuple[RunConfig, PreparedData]:
    config = RunConfig.read(run_dir)
    data_config = config.data_config
    if not Path(data_config.data_dir).exists():
        raise DataError(
            f"the images this run was trained on are gone from {str(data_config.data_dir)!r}; "
            "the export scores the model on them: put the data set back at that path (or a "
            "symbolic link to it) and run python -m search.export again."
        )
    data = prepare(data_config)
    # scored on what it trained on
    check_data(run_dir, manifest(data.discovery), write=False, content_key=data.cache_dir.name)
    return config, data


def _params(values: dict[str, Any], config: RunConfig, data: PreparedData) -> AlexNetParams:
    """A configuration's values resolved at the run's image size and width."""
    return resolve(
        values,
        image_size=config.image_size,
        width=config.width,
        num_classes=len(data.classes),
        space=config.space,
    )


def _batches(images: np.ndarray, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield np.ascontiguousarray(images[start : start + batch_size])  # uint8, as trained


def _write_predictions(path: Path, data: PreparedData, probs: np.ndarray, split: str) -> None:
    """Per-image predictions of the exported model on ``split`` (confusion matrix, image grid):
    validation, or test for a refit, which trained on the validation images."""
    import pandas as pd

    files = [f for f in data.cached.files if f.split == split]
    predicted = np.argmax(probs, axis=1)
    frame = pd.DataFrame(
        {
            "path": [f.path for f in files],
            "label": [f.label for f in files],
            "predicted": [data.classes[i] for i in predicted],
            "probability": probs[np.arange(len(files)), predicted],
            "split": split,
        }
    )
    frame.to_csv(path, index=False)


def _source(run_dir: Path, options: dict[str, Any], test_labels: np.ndarray) -> dict[str, Any]:
    """What to export: the shipped configuration's refits (their probabilities averaged) or
    best judge run (the winner's, or with ``--select smallest`` the smaller equivalent one's),
    else the best trial."""
    table = load_confirm(run_dir)
    pick = shipped_pick(run_dir, table, test_labels, options) if len(table) else None
    rows = (
        shipped_runs(table, pick.trial_id, options.get("refit", "none"), refit_seed_count(options))
        if pick
        else []
    )
    if rows:
        row = rows[0]
        refit = str(row["stage"]) == REFIT
        on_test = refit and "test" in refit_splits(row)
        ids = [str(r["run_id"]) for r in rows]
        kind = "refit" if refit else "confirmation"
        return {
            "what": f"{kind} run{'s' if len(ids) > 1 else ''} {', '.join(ids)}",
            "run_ids": ids,
            "trial_id": str(row["trial_id"]),
            "seeds": [int(r["seed"]) for r in rows],
            "values": params_of(row),
            "val_accuracy": None if refit else float(row["val_accuracy"]),
            "trained_on_validation": refit,
            "trained_on_test": on_test,
            "averaged_epochs": averaged_epochs(row) if refit else None,
        }
    best = res.best_trial(res.load_trials(run_dir))
    if best is None:
        raise ExportError(f"{str(run_dir)!r} has no completed trial to export.")
    return {
        "what": f"the best trial {best['trial_id']}",
        "run_ids": [str(best["trial_id"])],
        "trial_id": str(best["trial_id"]),
        "seeds": [],
        "values": params_of(best),
        "val_accuracy": float(best["val_accuracy"]),
        "trained_on_validation": False,
        "trained_on_test": False,
        "averaged_epochs": None,
    }


def _members(run_dir: Path, source: dict[str, Any], params: AlexNetParams) -> list[Any]:
    """The float32 networks of ``source``'s runs, their trained weights loaded."""
    from models.checkpoint import CheckpointError, load_weights

    models = []
    for index, rid in enumerate(source["run_ids"]):
        ckpt = checkpoint_path(run_dir, rid)
        if not ckpt.exists():
            raise ExportError(f"the checkpoint of {source['what']} is missing ({ckpt}).")
        model = build_float32(params)  # served in float32 whatever the training precision
        if len(source["run_ids"]) > 1:
            model.name = f"alexnet_{index + 1}"  # named apart inside the average
        try:
            load_weights(model, ckpt)
        except CheckpointError as exc:
            raise RunDirError(
                f"{exc}. The weights of {source['what']} are lost: rerun the search command "
                "with another --run-dir to train again, or restore the file from a backup."
            ) from None
        models.append(model)
    return models


def export_run(run_dir: Path) -> dict[str, Any]:
    config, data = _data(run_dir)
    source = _source(run_dir, config.options, data.cached.split("test")[1])
    params = _params(source["values"], config, data)
    tta = tta_of(config.options)
    model = average_of(_members(run_dir, source, params), mirror=tta == "flip")
    # Keras' own Adam in the saved .keras file: the optimizer a user fine-tuning it expects
    compile_alexnet(model, params, jit_compile=False, fused=False)
    scores = {}
    for split in ("validation", "test"):
        x, y = data.arrays(split)
        probs = np.concatenate([model.predict_on_batch(b) for b in _batches(x, config.batch_size)])
        scores[split] = (probs, float(np.mean(np.argmax(probs, axis=1) == y)), len(y))
    trial_id = source["trial_id"]

    # Built beside the current export, verified, then swapped in: a kill at any moment leaves
    # the previous verified export or the new one, never none and never an unverified one.
    for old in run_dir.glob(".export-*"):
        shutil.rmtree(old, ignore_errors=True)  # a killed export's (we hold the run's lock)
    stage = run_dir / f".export-{os.getpid()}"
    stage.mkdir()
    out = stage / "best_model"
    export_saved_model(model, out, image_size=params.image_size, classes=data.classes)
    (out / "labels.json").write_text(
        json.dumps(
            {
                "classes": list(data.classes),
                "image_size": params.image_size,
                "input": "uint8 RGB (None, S, S, 3), resized as in training; signature 'serve'",
                "signatures": {
                    "serve": "image: uint8 (None, S, S, 3) -> output_0: class probabilities",
                    BYTES_SIGNATURE: f"{BYTES_INPUT}: encoded JPEG/PNG/GIF/BMP/WebP (None,) -> "
                    "probabilities, class_index, class_name, error",
                },
                "trial_id": trial_id,
            },
            indent=2,
        )
    )
    keras_path = stage / "best_model.keras"
    model.save(keras_path)
    np.save(stage / "probs-in-memory.npy", scores["validation"][0])
    np.save(stage / "probs-in-memory-test.npy", scores["test"][0])
    shown = "test" if source["trained_on_validation"] else "validation"
    _write_predictions(stage / "validation_predictions.csv", data, scores[shown][0], shown)

    verify = subprocess.run(
        [sys.executable, "-m", "search.export", "--verify", str(run_dir), "--stage", str(stage)],
        env=interrupt.child_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if verify.returncode != 0:
        shutil.rmtree(stage, ignore_errors=True)
        raise ExportError(f"reloading the export failed:\n{verify.stderr[-2000:]}")
    reloaded = json.loads(verify.stdout.strip().splitlines()[-1])
    val_memory, test_memory = scores["validation"][1], scores["test"][1]
    record = {
        "source_trial": trial_id,
        # the run, or the runs whose class probabilities it averages ("refit-7 + refit-7-s2")
        "source_run": " + ".join(source["run_ids"]) if source["seeds"] else None,
        "source_seeds": source["seeds"],
        # a refit trained on the validation images: its validation score below only checks
        # the reload, it is no estimate of anything
        "trained_on_validation": source["trained_on_validation"],
        # --refit all: its test score below is a reload check too, not an accuracy
        "trained_on_test": source["trained_on_test"],
        "averaged_epochs": source["averaged_epochs"],  # a refit: the mean of its last epochs
        "tta": tta,  # flip: every score below averages each image with its mirror image
        "params": params.to_dict(),
        "val_accuracy_trial": source["val_accuracy"],
        "val_accuracy_in_memory": val_memory,
        "val_accuracy_reloaded": reloaded["val_accuracy_reloaded"],
        "val_accuracy_keras_reloaded": reloaded["val_accuracy_keras_reloaded"],
        "test_accuracy_in_memory": test_memory,
        "test_accuracy_reloaded": reloaded["test_accuracy_reloaded"],
        "max_probability_difference": reloaded["max_probability_difference"],
        "equal": val_memory == reloaded["val_accuracy_reloaded"]
        and test_memory == reloaded["test_accuracy_reloaded"],
        "problems": skew_problems(reloaded["serve_bytes"]),
        "n_validation": scores["validation"][2],
        "n_test": scores["test"][2],
        "classes": list(data.classes),
        "latency_ms_per_image": reloaded["latency_ms_per_image"],
        "latency_ms_per_image_batch_32": reloaded["latency_ms_per_image_batch_32"],
        "n_params": int(model.count_params()),
        "serve_bytes": reloaded["serve_bytes"],
        "saved_model": str(run_dir / "best_model"),
        "keras_file": str(run_dir / "best_model.keras"),
    }
    record["front_latency"] = front_latency(
        run_dir,
        config,
        data,
        stage / ".latency",
        exported=(
            record["params"],
            {
                "batch_1": record["latency_ms_per_image"],
                "batch_32": record["latency_ms_per_image_batch_32"],
            },
        )
        if len(source["run_ids"]) == 1 and tta != "flip"
        else None,
    )
    _, test_labels = data.cached.split("test")
    table = load_confirm(run_dir)
    confirmed = (
        run_evidence(run_dir, table, test_labels, None, config.options)
        if len(table) and config.options.get("confirm")
        else None
    )
    card = build_card(config, record, confirmed=confirmed)
    write_card(out, card)
    files = [*sorted(p for p in out.rglob("*") if p.is_file()), keras_path]
    record |= {
        "model_card": card,
        "size_bytes": sum(p.stat().st_size for p in files),
        "saved_model_bytes": sum(p.stat().st_size for p in files if p != keras_path),
        "keras_bytes": keras_path.stat().st_size,
        "files": {str(p.relative_to(stage)): file_digest(p, algorithm="sha256") for p in files},
        "created_at": now_iso(),
    }
    record["passed"] = record["equal"] and not record["problems"]
    if not record["equal"]:
        record["problems"].insert(0, "the reloaded SavedModel does not score as in memory")
    _install(stage, run_dir, record)
    return record


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the system has no such call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _install(stage: Path, run_dir: Path, record: dict[str, Any]) -> None:
    """Put a verified export in place. ``export.json`` goes first (so it never vouches for a
    model it did not check) and comes back last; the model folder is exchanged atomically."""
    (run_dir / "export.json").unlink(missing_ok=True)
    final = run_dir / "best_model"
    if not final.exists():
        os.replace(stage / "best_model", final)
    elif not _exchange(stage / "best_model", final):  # the new one in, the old one staged
        os.replace(final, stage / "previous_model")
        os.replace(stage / "best_model", final)
    os.replace(stage / "best_model.keras", run_dir / "best_model.keras")
    os.replace(stage / "validation_predictions.csv", run_dir / "validation_predictions.csv")
    write_json_atomic(run_dir / "export.json", record)
    shutil.rmtree(stage, ignore_errors=True)


def verify_run(run_dir: Path, stage: Path) -> dict[str, Any]:
    """In a fresh process: score the staged SavedModel (and its .keras copy) on validation and
    test."""
    import keras
    import tensorflow as tf

    config, data = _data(run_dir)
    batch = config.batch_size
    x_val, y_val = data.arrays("validation")
    x_test, y_test = data.arrays("test")
    loaded = tf.saved_model.load(str(stage / "best_model"))
    serve = loaded.signatures["serve"]
    out_key = next(iter(serve.structured_outputs))

    def served(x: np.ndarray) -> np.ndarray:
        return np.concatenate([serve(tf.constant(b))[out_key].numpy() for b in _batches(x, batch)])

    probs = served(x_val)
    acc = float(np.mean(np.argmax(probs, axis=1) == y_val))
    test_probs = served(x_test)
    test_acc = float(np.mean(np.argmax(test_probs, axis=1) == y_test))
    keras_model = keras.saving.load_model(  # safe_mode stays on
        stage / "best_model.keras", custom_objects=custom_objects()
    )
    kprobs = np.concatenate([keras_model.predict_on_batch(b) for b in _batches(x_val, batch)])
    memory = np.load(stage / "probs-in-memory.npy")
    memory_test = np.load(stage / "probs-in-memory-test.npy")
    # serve_bytes from the original files, against the training path's test predictions
    by_files = score_files(loaded.signatures[BYTES_SIGNATURE], data.paths("test"), batch=batch)
    by_bytes = agreement(memory_test, by_files, y_test)
    one = next(_batches(x_val[:1], 1))
    return {
        "val_accuracy_reloaded": acc,
        "test_accuracy_reloaded": test_acc,
        "val_accuracy_keras_reloaded": float(np.mean(np.argmax(kprobs, axis=1) == y_val)),
        "max_probability_difference": float(
            max(np.max(np.abs(probs - memory)), np.max(np.abs(test_probs - memory_test)))
        ),
        "latency_ms_per_image": _latency_ms(serve, one, 1),
        "latency_ms_per_image_batch_32": _latency_ms(serve, one, 32),
        "serve_bytes": by_bytes,
    }


EXPORT_FIX = (
    "free some space (or copy the run to a writable disk), then export again with: "
    "python -m search.export RUN_DIR"
)


FRONT_LATENCY_MAX = 8  # front configurations timed at most (the smallest ones)


def front_latency(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    scratch: Path,
    exported: tuple[dict[str, Any], dict[str, float]] | None,
) -> dict[str, dict[str, float]]:
    """The serving latency of each Pareto-front configuration (``search.pareto``), on this
    machine: its ``serve`` signature written as a SavedModel, reloaded and timed as the
    export's is. The weights are a fresh initialisation: the graph and the arithmetic, hence
    the time, are those of the trained model. ``exported``: the exported model's values and
    its times, reused for the front's configuration with the same values (None: an average
    of refits or of mirror images, slower than one network of its configuration, so every one
    is timed)."""
    import keras
    import tensorflow as tf

    one = next(_batches(data.arrays("validation")[0][:1], 1))
    out: dict[str, dict[str, float]] = {}
    for rec in front_records(res.load_trials(run_dir), config.max_epochs)[:FRONT_LATENCY_MAX]:
        params = _params(rec["values"], config, data)
        if exported and params.to_dict() == exported[0]:
            out[rec["trial_id"]] = dict(exported[1])
            continue
        folder = scratch / rec["trial_id"]
        try:
            export_saved_model(
                build_float32(params),
                folder,
                image_size=params.image_size,
                classes=data.classes,
                with_bytes=False,
            )
            serve = tf.saved_model.load(str(folder)).signatures["serve"]
            out[rec["trial_id"]] = {
                "batch_1": _latency_ms(serve, one, 1),
                "batch_32": _latency_ms(serve, one, 32),
            }
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            keras.backend.clear_session()
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def _latency_ms(serve: Any, one: np.ndarray, batch: int, repeats: int = 7) -> float:
    """Median milliseconds per image of the ``serve`` signature on ``batch`` copies of one
    image, after one warm-up call, on this machine."""
    import tensorflow as tf

    images = tf.constant(np.repeat(one, batch, axis=0))
    serve(images)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        serve(images)
        times.append((time.perf_counter() - t0) / batch * 1000)
    return float(np.median(times))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m search.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path)
    p.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stage", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    interrupt.die_with_parent()  # run by a search: ends with it
    interrupt.install()
    try:
        return _main(args)
    except interrupt.Interrupted as exc:
        print(
            f"interrupted by {exc.name} before the export finished; make it with: python -m "
            f"search.export {shlex.quote(str(args.run_dir))}",
            flush=True,
        )
        return exc.exit_code


def _main(args: argparse.Namespace) -> int:
    import_tensorflow_quietly()
    if args.verify:
        print(json.dumps(verify_run(args.run_dir, args.stage)))
        return 0
    if not is_run_dir(args.run_dir):
        print(
            f"error: {str(args.run_dir)!r} is not a search run directory (no config.json); "
            "pass the folder that search.run printed as its run directory.",
            file=sys.stderr,
        )
        return 2
    try:
        with locked(args.run_dir):
            outcome = export_checked(args.run_dir)
    except RunDirError as exc:  # another command holds the run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the lock file of a read-only run
        room = no_room(exc, args.run_dir, fix=EXPORT_FIX)
        if room is None:
            raise
        print(f"error: {room}", file=sys.stderr)
        return 2
    if outcome.out:
        print(outcome.out)
    if outcome.err:
        print(outcome.err, file=sys.stderr)
    return outcome.code


@dataclass(frozen=True)
class ExportOutcome:
    """An export's result as a command reports it: ``code`` 0 (exported and checked), 1 (the
    check failed, or nothing could be exported) or 2 (the user must fix something: ``room``
    when it is a full or read-only disk); ``out`` the result line, ``err`` what went wrong."""

    code: int
    out: str = ""
    err: str = ""
    room: NoRoom | None = None


def export_checked(run_dir: Path) -> ExportOutcome:
    """``export_run`` for a command that holds the run's lock (``search.run`` at its end, in
    its own process: the check still reloads in a fresh one), its failures as outcomes."""
    try:
        record = export_run(run_dir)
    except ExportError as exc:
        return ExportOutcome(1, err=f"error: {exc}")
    except (RunDirError, DataError) as exc:
        return ExportOutcome(2, err=f"error: {exc}")
    except Exception as exc:  # a full disk or a read-only folder; TensorFlow's writers too
        room = no_room(exc, run_dir, fix=EXPORT_FIX)
        if room is None:
            raise
        shutil.rmtree(run_dir / f".export-{os.getpid()}", ignore_errors=True)
        return ExportOutcome(2, err=f"error: {room}", room=room)
    verdict = "passed" if record["passed"] else "FAILED"
    source = record["source_run"] or f"trial {record['source_trial']}"
    trained = ", trained on: a reload check only"
    line = (
        f"export check {verdict}: {source}; in memory / reloaded SavedModel: validation "
        f"{record['val_accuracy_in_memory']:.4f} / {record['val_accuracy_reloaded']:.4f} "
        f"({record['n_validation']} images{trained if record['trained_on_validation'] else ''}), "
        f"test {record['test_accuracy_in_memory']:.4f} / "
        f"{record['test_accuracy_reloaded']:.4f} ({record['n_test']} images"
        f"{trained if record.get('trained_on_test') else ''}); "
        f"{record['saved_model']}"
    )
    problems = "\n".join(f"  export check: {problem}" for problem in record["problems"])
    return ExportOutcome(0 if record["passed"] else 1, out=line, err=problems)


if __name__ == "__main__":
    raise SystemExit(main())
