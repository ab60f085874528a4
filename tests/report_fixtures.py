"""A synthetic run directory: results as the search writes them, without training anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from search.confirm import (
    Candidate,
    ConfirmRow,
    confirm_seed,
    evidence,
    predictions_path,
    record_confirm,
    run_candidates,
    run_id,
)
from search.options import SearchOptions
from search.results import TrialRow, record_trial
from search.rundir import RunConfig, library_versions, write_json_atomic
from search.space import DEFAULT_SPACE, baseline_values

XSS_FILE = "dog.<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">.jpg"
XSS_CLASS = "<b onmouseover=alert(1)>dog</b>"
XSS_ERROR = "</script><script>document.body.setAttribute('data-pwned','2')</script>"


def _row(
    trial_id: str,
    status: str,
    score: float | None,
    *,
    lr: float = 1e-4,
    dense: int = 1024,
    dropout: float = 0.1,
    lrn: bool = True,
    epochs: int = 3,
    bracket: int | None = 1,
    rnd: int | None = 0,
    error: str | None = None,
    at: int = 0,
) -> TrialRow:
    return TrialRow(
        trial_id=trial_id,
        status=status,
        values={
            **baseline_values(),
            "dropout": dropout,
            "lrn": lrn,
            "dense_units": dense,
            "learning_rate": lr,
        },
        val_accuracy=score,
        best_epoch=epochs if score else None,
        epochs=epochs,
        seconds=1.5,
        params=1234,
        error=error,
        fit_seconds=1.2,
        peak_rss_mb=900.0,
        bracket=bracket,
        round=rnd,
        parent_id=None,
        initial_epoch=0,
        target_epochs=epochs,
        ended_at=f"2026-11-26T00:00:{at:02d}+00:00",
    )


def _history(epochs: int, start: float) -> list[tuple[int, dict[str, float]]]:
    return [
        (
            e,
            {
                "val_accuracy": start + 0.01 * e,
                "val_loss": 0.7 - 0.01 * e,
                "loss": 0.6,
                "accuracy": 0.6,
            },
        )
        for e in range(1, epochs + 1)
    ]


def make_run(
    run_dir: Path,
    *,
    state: str = "finished",
    classes: tuple[str, str] = ("cat", "dog"),
    failed: bool = True,
    exported: bool = True,
    confirmed: bool = True,
    pid: int | None = None,
    max_epochs: int = 3,
) -> Path:
    run_dir.mkdir(parents=True)
    cache = run_dir / "fake-cache"
    cache.mkdir()
    val_paths = [f"test/{classes[i % 2]}.{i}.jpg" for i in range(6)] + [f"test/{XSS_FILE}"]
    np.save(
        cache / "images-67.npy",
        np.random.default_rng(0).integers(0, 255, (7, 67, 67, 3), dtype=np.uint8),
    )
    (cache / "images-67.json").write_text(
        json.dumps({"rows": {p: i for i, p in enumerate(val_paths)}, "rejects": []})
    )
    # written by the same code as a real search's (search.rundir.RunConfig)
    opts = SearchOptions(
        trials=6,
        max_epochs=max_epochs,
        image_size=67,
        width=0.125,
        batch_size=8,
        confirm=3 if confirmed else 0,
        confirm_top=1,  # the fixture's judge runs are the search's best's: no selection stage
        refit="none",
        data_dir=run_dir.parent / "data dir",
    )
    RunConfig(
        identity=opts.identity(),
        options=opts.to_dict(),
        space=DEFAULT_SPACE,
        data_config=opts.data_config(),
        classes=tuple(classes),
        data={
            "layout": "train-test",
            "cache": str(cache),
            "skipped": 1,
            "counts": {
                "train": {classes[0]: 10, classes[1]: 11},
                "validation": {classes[0]: 3, classes[1]: 4},
                "test": {classes[0]: N_TEST // 2, classes[1]: N_TEST // 2},
            },
        },
        versions=library_versions(),
        command="python -m search.run --trials 6 --data-dir 'data dir'",
        created_at="2026-11-26T00:00:00+00:00",
    ).write(run_dir)
    (run_dir / "rejects.json").write_text(
        json.dumps(
            {
                "skipped": [
                    {"path": f"train/{XSS_FILE}", "reason": "corrupt or truncated: " + XSS_ERROR}
                ],
                "unlabelled": ["1234.jpg"],
            }
        )
    )
    rows = [
        (
            _row(
                "baseline",
                "completed",
                0.60,
                lr=1e-5,
                dense=4096,
                dropout=0.25,
                bracket=None,
                rnd=None,
                epochs=3,
                at=0,
            ),
            0.57,
        ),
        (_row("0000", "completed", 0.65, lr=9e-4, at=1), 0.62),
        (_row("0001", "completed", 0.70, lr=8e-4, dense=2048, at=2), 0.67),
        (_row("0002", "completed", 0.55, lr=2e-5, lrn=False, dropout=0.5, at=3), 0.52),
        (_row("0003", "completed", 0.72, lr=9.5e-4, dense=512, rnd=1, epochs=3, at=4), 0.69),
    ]
    if failed:
        rows.append(
            (_row("0004", "failed", None, error="MemoryError: " + XSS_ERROR, epochs=0, at=5), 0.0)
        )
    for row, start in rows:
        record_trial(run_dir, row, _history(row.epochs, start))
    (run_dir / "status.json").write_text(
        json.dumps(
            {
                "state": state,
                "pid": pid if pid is not None else os.getpid(),
                "wall_seconds": 125.0,
                "peak_disk_mb": 42.0,
            }
        )
    )
    if exported:
        (run_dir / "export.json").write_text(
            json.dumps(
                {
                    "source_trial": "0003",
                    "val_accuracy_in_memory": 0.72,
                    "val_accuracy_reloaded": 0.72,
                    "equal": True,
                    "n_validation": 7,
                    "classes": list(classes),
                    "latency_ms_per_image": 1.5,
                    "saved_model": str(run_dir / "best_model"),
                    "size_bytes": 3 * 2**20,
                }
            )
        )
        labels = [classes[i % 2] for i in range(6)] + [classes[1]]
        predicted = [*labels[:5], classes[0], classes[0]]  # two mistakes
        pd.DataFrame(
            {"path": val_paths, "label": labels, "predicted": predicted, "probability": [0.9] * 7}
        ).to_csv(run_dir / "validation_predictions.csv", index=False)
    if confirmed:
        write_confirmation(run_dir)
    return run_dir


N_TEST = 40


def write_confirmation(run_dir: Path, *, seeds: int = 3) -> dict:
    """Confirmation runs of trial 0003 and the baseline, with test predictions, through the
    same writers the search uses; then ``summary.json`` from ``search.confirm.evidence``."""
    labels = np.array([i % 2 for i in range(N_TEST)])
    rng = np.random.default_rng(5)
    cands = [
        (
            "top-1",
            Candidate(
                "0003",
                {"dropout": 0.1, "lrn": True, "dense_units": 512, "learning_rate": 9.5e-4},
                0.72,
            ),
            0.75,
            0.66,
        ),
        ("baseline", Candidate("baseline", baseline_values(), 0.60), 0.62, 0.58),
    ]
    for index in range(seeds):
        for name, cand, p_right, val in cands:
            rid = run_id(cand, index)
            right = rng.random(N_TEST) < p_right
            predicted = np.where(right, labels, 1 - labels).astype(np.int16)
            path = predictions_path(run_dir, rid)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, predicted)
            record_confirm(
                run_dir,
                ConfirmRow(
                    run_id=rid,
                    stage="judge",
                    candidate=name,
                    trial_id=cand.trial_id,
                    seed_index=index + 1,
                    seed=confirm_seed(1337, index),
                    values=cand.values,
                    search_val_accuracy=cand.search_val_accuracy,
                    val_accuracy=val + 0.01 * index,
                    val_tail=val - 0.03 + 0.01 * index,
                    best_epoch=3,
                    at_chance=False,
                    test_accuracy=float(np.mean(predicted == labels)),
                    n_validation=7,
                    n_test=N_TEST,
                    epochs=3,
                    seconds=2.0,
                    peak_rss_mb=800.0,
                    status="completed",
                    error=None,
                    ended_at=f"2026-11-26T00:01:{index:02d}+00:00",
                ),
            )
    from search.confirm import load_confirm

    summary = evidence(
        run_dir,
        load_confirm(run_dir),
        labels,
        None,
        cands=run_candidates(run_dir, {"confirm_top": 1}),
        refit="none",
    )
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


def add_budget_confounded_trials(run_dir: Path, *, n: int = 24, seed: int = 0) -> None:
    """Hyperband-like trials where ``lrn`` has no effect but every LRN-on trial got only 3
    epochs and every LRN-off one 20, while ``dense_units`` really helps; with the history
    of each epoch, as the search records it."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        lrn = i % 2 == 0
        epochs = 3 if lrn else 20
        dense = int(rng.choice([512, 1024, 2048, 3072, 4096]))
        effect = 0.12 * (dense - 512) / 3584
        curve = [
            0.5 + 0.25 * (1 - np.exp(-e / 6)) + effect + rng.normal(0, 0.004)
            for e in range(1, epochs + 1)
        ]
        history = [
            (e, {"val_accuracy": float(v), "val_loss": 1 - float(v)})
            for e, v in enumerate(curve, start=1)
        ]
        row = _row(
            f"c{i:02d}",
            "completed",
            float(max(curve)),
            lr=float(10 ** rng.uniform(-5, -3)),
            dense=dense,
            dropout=float(rng.uniform(0, 0.6)),
            lrn=lrn,
            epochs=epochs,
            at=10 + i,
        )
        record_trial(run_dir, row, history)
