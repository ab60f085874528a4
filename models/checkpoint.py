"""Trial checkpoints: the model's weights only, without the optimizer's slots; and the one
"last epoch" training state per running trial that lets an interrupted trial resume.

Keras' ``save_weights`` stores Adam's two slots beside every weight, tripling a checkpoint
(667 MiB per trial at 227px). The search needs only the weights: to continue a promoted
Hyperband trial and to export the best one. A training keeps its best epoch's weights in
memory and writes the checkpoint once, when it ends. The training state (weights, optimizer
variables, the best weights when they are not the current ones, epoch, history) exists only
while its trial runs: the search deletes it once the trial's row is recorded.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np


def save_weights(model: keras.Model, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (.npz) atomically."""
    _write(model.get_weights(), Path(path))


def _write(weights: list[np.ndarray], path: Path, **named: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with tmp.open("wb") as fh:
            np.savez(fh, *[np.asarray(w) for w in weights], **named)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def training_state(
    model: keras.Model,
    meta: dict,
    tail: TailMean | None = None,
    into: list[np.ndarray] | None = None,
    best: BestWeights | None = None,
) -> tuple[list[np.ndarray], dict]:
    """Copies of the weights and the optimizer's variables (step count, Adam's slots, the
    loss scale), with ``meta`` as JSON, a refit's running tail sum and the best epoch's
    weights: what ``load_training_state`` puts back. The best weights are stored only when
    they are not the current ones (``meta["epochs"]`` is not their epoch). ``into``: arrays
    of an earlier snapshot of the same model to copy into instead of allocating new ones
    (``EpochState``)."""
    weights, slots = _copy_variables(model.weights, model.optimizer.variables, into)
    named = {f"opt_{i}": s for i, s in enumerate(slots)}
    sums = tail.sums() if tail is not None else []
    named.update({f"tail_{i}": s for i, s in enumerate(sums)})
    kept: list[np.ndarray] = []
    best_epoch = best.epoch if best is not None else None
    if best is not None and best.weights is not None and best_epoch != meta.get("epochs"):
        kept = best.weights
    named.update({f"best_{i}": w for i, w in enumerate(kept)})
    extra = {
        "tail_count": tail.count if tail is not None else 0,
        "n_tail": len(sums),
        "n_best": len(kept),
        "best_weights_epoch": best_epoch,
    }
    named["meta"] = np.array(json.dumps({**meta, **extra, "n_weights": len(weights)}))
    return weights, named


def _copy_variables(
    weights: list, slots: list, into: list[np.ndarray] | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One memory copy of each variable. Fresh arrays of this size come from the kernel page
    by page (the large ones are not reused by ``malloc``): copying into the previous
    snapshot's arrays cut a 20M-parameter model's snapshots from 3.5 s to 0.8 s over 6
    epochs in the trial process (dense 4096, ``bench/README.md``)."""
    import tensorflow as tf

    variables = [*weights, *slots]
    if into is None or [b.shape for b in into] != [tuple(v.shape) for v in variables]:
        copies = [np.asarray(v.numpy()) for v in variables]
    else:
        for buf, var in zip(into, variables, strict=True):
            # a view of the variable's buffer (no copy), copied once into ``buf``
            np.copyto(buf, np.asarray(tf.convert_to_tensor(var.value)))
        copies = into
    return copies[: len(weights)], copies[len(weights) :]


def load_training_state(
    model: keras.Model,
    path: Path,
    key: str | None = None,
    tail: TailMean | None = None,
    best: BestWeights | None = None,
) -> dict | None:
    """Restore a ``CheckpointWriter.save_state`` file into a compiled model of the same
    architecture (its optimizer built), ``tail`` to the sum it had then and ``best`` to the
    best weights it had (left empty for a file that did not store them); its ``meta``, or
    None (nothing touched) if it cannot be read whole or, given ``key``, was saved by another
    training."""
    try:
        with np.load(Path(path)) as data:
            meta = json.loads(str(data["meta"]))
            if key is not None and meta.get("key") != key:
                return None
            n = int(meta["n_weights"])
            weights = [data[f"arr_{i}"] for i in range(n)]
            slots = [data[f"opt_{i}"] for i in range(len(model.optimizer.variables))]
            sums = [data[f"tail_{i}"] for i in range(int(meta.get("n_tail", 0)))]
            kept = [data[f"best_{i}"] for i in range(int(meta.get("n_best", 0)))]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None  # torn or foreign: the trial trains from its start instead
    variables = model.optimizer.variables
    if len(weights) != len(model.get_weights()) or any(
        tuple(s.shape) != tuple(v.shape) for s, v in zip(slots, variables, strict=True)
    ):
        return None
    model.set_weights(weights)
    for var, value in zip(model.optimizer.variables, slots, strict=True):
        var.assign(value)
    if tail is not None:
        tail.restore(sums, int(meta.get("tail_count", 0)))
    best_epoch = meta.get("best_weights_epoch")
    if best is not None and best_epoch is not None:
        best.restore(kept or [np.array(w) for w in weights], int(best_epoch))
    return dict(meta)


class BestWeights:
    """The best epoch's weights so far, in memory.

    A new best is copied into the same arrays (one memory copy, tens of ms); the checkpoint
    file is written once, when the training ends, and the weights go into each epoch-state
    file an interrupted training resumes from. Writing the checkpoint at every improving
    epoch (80 MB at dense 4,096) made those epochs slower, the write competing with the
    training for 2 cores (``bench/README.md``). Arrays handed to the writer are its own until
    written: the next best takes new ones.
    """

    def __init__(self) -> None:
        self.weights: list[np.ndarray] | None = None
        self.epoch: int | None = None
        self._handed_off = False

    def keep(self, model: keras.Model, epoch: int) -> None:
        """Epoch ``epoch`` (1-based) is the best so far."""
        into = None if self._handed_off else self.weights
        self.weights, _ = _copy_variables(model.weights, [], into)
        self.epoch, self._handed_off = epoch, False

    def hand_off(self) -> list[np.ndarray] | None:
        """The arrays, now the writer's: a later ``keep`` does not overwrite them."""
        self._handed_off = self.weights is not None
        return self.weights

    def restore(self, weights: list[np.ndarray], epoch: int) -> None:
        self.weights, self.epoch, self._handed_off = list(weights), epoch, False


class TailMean:
    """The mean of a training's weights over its last ``window`` epochs of ``epochs``.

    A refit has no validation images left to choose an epoch with, and one epoch's weights
    move a few points of accuracy from the next at a constant learning rate; the mean of the
    last few epochs' weights (Polyak averaging of the tail, as in stochastic weight averaging,
    Izmailov et al. 2018) sits between them and scored higher than the last epoch in
    ``bench/refit.py``. AlexNet has no batch normalisation, so the mean needs no statistics
    recomputed. Kept as a running sum that the epoch state saves, so an interrupted refit
    resumes it exactly.
    """

    def __init__(self, epochs: int, window: int) -> None:
        if not 1 <= window <= epochs:
            raise ValueError(f"window must be 1..{epochs}, but got {window}")
        self.first = epochs - window + 1  # the first epoch (1-based) in the mean
        self.count = 0
        self._sum: list[np.ndarray] = []

    def covers(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) is in the mean: a caller copies weights only then."""
        return epoch >= self.first

    def add(self, epoch: int, weights: list[np.ndarray]) -> None:
        """Epoch ``epoch`` (1-based) ended with ``weights``; earlier epochs are not counted."""
        if not self.covers(epoch):
            return
        if not self._sum:
            self._sum = [np.array(w, dtype=np.float32) for w in weights]
        else:
            for acc, w in zip(self._sum, weights, strict=True):
                acc += w
        self.count += 1

    def mean(self) -> list[np.ndarray]:
        if not self.count:
            raise ValueError("no epoch of the window has ended")
        return [(acc / self.count).astype(np.float32) for acc in self._sum]

    def sums(self) -> list[np.ndarray]:
        return list(self._sum)

    def restore(self, sums: list[np.ndarray], count: int) -> None:
        self._sum = [np.array(s, dtype=np.float32) for s in sums] if count else []
        self.count = count if sums else 0


class CheckpointWriter:
    """Checkpoints written off the training thread.

    ``save`` copies the weights (``get_weights`` returns copies, a memory copy of tens of MB)
    and returns; a thread writes the file while the next epoch trains. Writes happen in the
    order they were asked for, each atomically, so a reader never sees a torn or an older
    file after ``wait``, which a training calls before it reports its checkpoint as written.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: list[Future[None]] = []

    def save(self, model: keras.Model, path: Path) -> None:
        self.save_weights(model.get_weights(), path)

    def save_weights(self, weights: list[np.ndarray], path: Path) -> None:
        """Weights already copied (a ``TailMean``'s mean), written like ``save``."""
        self._pending.append(self._pool.submit(_write, weights, Path(path)))

    def save_state(self, state: tuple[list[np.ndarray], dict], path: Path) -> None:
        """A ``training_state`` snapshot (``load_training_state``), written like ``save``."""
        weights, named = state
        self._pending.append(self._pool.submit(_write, weights, Path(path), **named))

    def wait(self) -> None:
        """Block until every checkpoint asked for is on disk; a failed write raises here."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read whole (empty, truncated, not ours)."""


def read_weights(path: Path) -> list[np.ndarray]:
    """The arrays of a ``save_weights`` file; ``CheckpointError`` if it cannot be read whole."""
    try:
        with np.load(Path(path)) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read whole ({type(exc).__name__}: {exc}); it "
            "is damaged (a full disk, a copy cut short)"
        ) from None


def load_weights(model: keras.Model, path: Path) -> None:
    """Load weights written by ``save_weights`` into a model of the same architecture."""
    weights = read_weights(path)
    expected = len(model.get_weights())
    if len(weights) != expected:
        raise ValueError(
            f"checkpoint {str(path)!r} holds {len(weights)} arrays but the model "
            f"has {expected}; it was saved from another architecture."
        )
    model.set_weights(weights)


class EpochState:
    """The last completed epoch's training state of one running trial.

    Every epoch end takes a copy in memory (a memory copy of the weights and Adam's two slots,
    into the previous epoch's arrays); the copy goes to disk when ``every_s`` seconds have
    passed since the last write, and on ``flush`` (an interrupted trial, before it exits). So
    short epochs do not pay a file write each, a clean interruption loses no finished epoch,
    and ``kill -9`` loses at most ``every_s`` seconds of training. A flushed copy belongs to
    the writer from then on: the next snapshot takes new arrays.
    """

    def __init__(self, path: Path, writer: CheckpointWriter, every_s: float) -> None:
        self.path, self.writer, self.every_s = Path(path), writer, every_s
        self._latest: tuple[list[np.ndarray], dict] | None = None
        self._best: BestWeights | None = None
        self._written_at = time.monotonic()

    def snapshot(
        self,
        model: keras.Model,
        meta: dict,
        tail: TailMean | None = None,
        best: BestWeights | None = None,
    ) -> None:
        reuse = None
        if self._latest is not None:
            weights, named = self._latest
            reuse = weights + [a for k, a in named.items() if k.startswith("opt_")]
        self._latest = training_state(model, meta, tail, into=reuse, best=best)
        self._best = best
        if time.monotonic() - self._written_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self._latest is not None:
            if self._best is not None and "best_0" in self._latest[1]:
                self._best.hand_off()  # the file holds them: the next best takes new arrays
            self.writer.save_state(self._latest, self.path)
            self._latest, self._written_at = None, time.monotonic()
