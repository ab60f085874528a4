"""The trial process: a process of its own that trains the models the search sends it.

Training AlexNet in a long-lived process leaks 230-360 MB per trial even after
``clear_session``, so the search trains here and replaces the process every
``--trials-per-worker`` trials (``search.trial.client``). The messages are in
``search.trial.protocol``: commands on stdin, events on the original stdout (anything else the
libraries print goes to stderr, which the search keeps in ``RUN_DIR/logs``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from data_pipeline.files import no_room
from search.devices import DeviceChoice, choose, cpu_flags
from search.interrupt import Interrupted, deferred, die_with_parent, install, raise_if_lost
from search.rundir import EPOCH_STATE, PEAK_WEIGHT_COPIES, ROOM_FIX, disk_usage_mb
from search.space import PARAM_NAMES
from search.tensorboard import EpochLog
from search.trial.protocol import (
    NO_ROOM,
    Done,
    Epoch,
    Exit,
    Failure,
    Message,
    Ready,
    Setup,
    Train,
    Warmup,
    WarmupDone,
    decode,
    encode,
)

if TYPE_CHECKING:
    from models.alexnet import AlexNetParams
    from models.checkpoint import BestWeights, TailMean


def _protocol_stream() -> TextIO:
    """Keep the real stdout for events; send fd 1 (library chatter) to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def memory_mb(name: str, pid: int | str = "self") -> float | None:
    """A process's memory figure from ``/proc/PID/status`` (``VmRSS``, ``VmHWM``: the peak)
    in MB; None where there is no such file (not Linux, a process that has ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _read_peak_rss_mb() -> float:
    peak = memory_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):  # Linux: "5" resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")


def configure_devices(precision: str, xla: str) -> DeviceChoice:
    """Resolve ``auto`` by the hardware (``search.devices.choose``) and set Keras's global
    policy: every model this process builds trains under it."""
    import keras
    import tensorflow as tf

    choice = choose(
        precision, xla, gpus=len(tf.config.list_physical_devices("GPU")), flags=cpu_flags()
    )
    keras.mixed_precision.set_global_policy(choice.policy)
    return choice


def clear_session() -> None:
    """``keras.backend.clear_session`` with the process's dtype policy put back.

    Keras 3's ``clear_session`` also resets the global policy to float32: every training
    after a process's first (the warm-up's model is its first) trained in float32 whatever
    ``--precision`` had chosen, 1.4x slower per epoch in bfloat16's place here, and without
    float16's speed-up or loss scaling on a GPU."""
    import keras

    policy = keras.mixed_precision.global_policy()
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(policy)


def make_strategy(name: str, cpu_devices: int = 1) -> tuple[Any, int]:
    """``mirrored``: ``tf.distribute.MirroredStrategy`` over the visible GPUs (one copy of the
    model per GPU, gradients all-reduced). Without GPUs it mirrors over ``cpu_devices`` logical
    devices the CPU is split into (``--cpu-devices``), so the multi-device path runs anywhere."""
    import tensorflow as tf

    if name == "none":
        return None, 1
    if name != "mirrored":
        raise ValueError(f"strategy must be none or mirrored, but got {name=}.")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(max(1, cpu_devices))]
        )
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return strategy, int(strategy.num_replicas_in_sync)


def step_seconds(
    model: Any, x: Any, y: Any, *, train_steps: int, eval_steps: int = 1
) -> tuple[float, float]:
    """Seconds per training step and per evaluation step on one batch, each timed after a
    first untimed call (tracing and compilation)."""
    model.train_on_batch(x, y)
    t0 = time.perf_counter()
    for _ in range(train_steps):
        model.train_on_batch(x, y)
    train_s = (time.perf_counter() - t0) / train_steps
    model.predict_on_batch(x)
    t0 = time.perf_counter()
    for _ in range(eval_steps):
        model.predict_on_batch(x)
    return train_s, (time.perf_counter() - t0) / eval_steps


def compile_for_training(model: Any, params: AlexNetParams, *, jit_compile: Any) -> None:
    """``compile_alexnet``, with the optimizer's variables made now rather than inside the
    first training step: a ``tf.function`` that creates variables is traced twice, which
    cost 0.4 s per trial here. The training is the same to the bit (its variables start at 0).
    """
    from models.alexnet import compile_alexnet

    compile_alexnet(model, params, jit_compile=jit_compile)
    model.optimizer.build(model.trainable_variables)


# the components timed inside the epoch-end hook, whose total is ``TrialTiming.callbacks``
IN_EPOCH_END = ("checkpoint", "tensorboard", "epoch_state")


class TrialTiming:
    """Where one training's time goes, for the per-trial cost breakdown (``costs.csv``).

    Tracing (building the train and test graphs at their first call) has no hook of its own
    without a per-batch callback, which would slow every step: it is the first epoch's (and
    the first validation's) excess over the median of the trial's other epochs. A one-epoch
    training has no steady epoch to compare with, so its tracing stays inside ``train``.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.epochs: list[float] = []
        self.validations: list[float] = []
        self.callbacks = 0.0

    @contextlib.contextmanager
    def add(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def costs(self, fit_seconds: float) -> dict[str, float]:
        """Seconds per component; ``train`` + ``validation`` are the epochs' own work."""
        out = dict(self.seconds)
        epochs, vals = self.epochs, self.validations
        in_hook = sum(out.get(k, 0.0) for k in IN_EPOCH_END)  # timed on their own
        trace_train = trace_test = 0.0
        if len(epochs) > 1:
            trace_train = max(0.0, epochs[0] - statistics.median(epochs[1:]))
        if len(vals) > 1:
            trace_test = max(0.0, vals[0] - statistics.median(vals[1:]))
            trace_train = max(0.0, trace_train - trace_test)  # the epoch includes validation
        validation = sum(vals) - trace_test
        # an epoch (begin hook to end hook) includes its validation, not the end hook's work
        train = sum(epochs) - sum(vals) - trace_train
        out.update(
            tracing=trace_train + trace_test,
            train=max(0.0, train),
            validation=max(0.0, validation),
            callbacks=max(0.0, self.callbacks - in_hook),  # progress events, disk usage, stop file
            fit_other=max(0.0, fit_seconds - sum(epochs) - self.callbacks),
        )
        return {k: round(v, 4) for k, v in out.items()}


class TrialProcess:
    def __init__(self, setup: Setup, out: TextIO) -> None:
        from data_pipeline.pipeline import prepare

        config = setup.config
        self.options = config.options
        self.out = out
        self.parent = os.getppid()
        strategy, self.replicas = make_strategy(
            self.options.get("strategy", "none"), int(self.options.get("cpu_devices", 1))
        )
        self.scope = strategy.scope if strategy is not None else contextlib.nullcontext
        self.device = configure_devices(self.options["precision"], self.options["xla"])
        self.policy, self.jit = self.device.policy, self.device.xla
        t0 = time.perf_counter()
        self.data = prepare(config.data_config)
        # Mirrored: each replica gets --batch-size, so the global batch grows with the replicas.
        self.batch_size = config.batch_size * self.replicas
        self.augment = bool(self.options["augment"])
        self.train, self.val = self.data.datasets(self.batch_size, augment=self.augment)
        self.data_seconds = time.perf_counter() - t0
        self.run_dir = Path(setup.run_dir)

    def emit(self, event: Message) -> None:
        self.out.write(encode(event))
        self.out.flush()

    def warmup(self, msg: Warmup) -> None:
        """Images/s of training and evaluation for one model, from a few timed steps."""
        import numpy as np

        from models.alexnet import build_alexnet

        params = msg.params
        with self.scope():
            model = build_alexnet(params)
            compile_for_training(model, params, jit_compile=self.jit)
        x, y = next(iter(self.train))
        train_s, eval_s = step_seconds(model, x, y, train_steps=max(1, msg.steps))
        n = int(np.shape(x)[0])
        self.emit(
            WarmupDone(
                train_img_s=n / train_s,
                eval_img_s=n / max(eval_s, 1e-9),
                params=int(model.count_params()),
                policy=self.policy,
                xla=self.jit,
            )
        )
        del model
        clear_session()  # with Python's garbage collection

    def trial(self, msg: Train) -> None:
        import keras

        from models.alexnet import build_alexnet
        from models.checkpoint import (
            BestWeights,
            CheckpointWriter,
            EpochState,
            TailMean,
            load_weights,
        )

        trial_id = msg.trial_id
        checkpoint = Path(msg.checkpoint)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        stop_file = Path(msg.stop_file)
        process = self
        state: dict[str, Any] = {
            "best": -math.inf,
            "best_epoch": None,
            "error": None,
            "pruned": False,
            "epochs": 0,
            "disk_mb": 0.0,
            "history": [],  # [epoch, metrics] of this training, restored ones included
        }
        key = _state_key(msg)
        tail = TailMean(msg.epochs, msg.average_last) if msg.refit and msg.average_last else None

        class Report(keras.callbacks.Callback):
            """Per-epoch events, checkpoints and timings. No batch-level hook: one would make
            Keras wait for every step's result before dispatching the next."""

            epoch = 0
            t0 = 0.0
            test_t0 = 0.0

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.epoch, self.t0 = epoch, time.perf_counter()

            def on_test_begin(self, logs: Any = None) -> None:
                self.test_t0 = time.perf_counter()

            def on_test_end(self, logs: Any = None) -> None:
                timing.validations.append(time.perf_counter() - self.test_t0)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                ended = time.perf_counter()
                timing.epochs.append(ended - self.t0)
                logs = {k: float(v) for k, v in (logs or {}).items()}
                if os.getppid() != process.parent:  # the search was killed: stop at once
                    os._exit(3)
                loss = logs.get("loss")
                if loss is not None and not math.isfinite(loss):
                    # the epoch's mean loss: NaN/inf as soon as one batch's loss was
                    state["error"] = f"NaN/inf loss at epoch {epoch + 1}"
                    self.model.stop_training = True
                    return
                val = logs.get("val_accuracy", float("nan"))
                with deferred():  # a signal waits until this epoch's state is whole
                    self._keep(epoch, val, logs)
                raise_if_lost()  # a stop whose exception a library swallowed: now
                state["disk_mb"] = max(state["disk_mb"], disk_usage_mb(process.run_dir))
                process.emit(
                    Epoch(
                        trial_id=trial_id,
                        epoch=epoch + 1,
                        metrics=logs,
                        seconds=time.perf_counter() - self.t0,
                        disk_mb=state["disk_mb"],
                    )
                )
                if stop_file.exists():
                    state["pruned"] = True
                    self.model.stop_training = True
                timing.callbacks += time.perf_counter() - ended

            def _keep(self, epoch: int, val: float, logs: dict[str, float]) -> None:
                """What this epoch changes: the best weights, the history, the epoch state."""
                if msg.refit:  # no validation left to choose with: the planned last epochs
                    if tail is not None and tail.covers(epoch + 1):  # no copy before
                        with timing.add("checkpoint"):
                            tail.add(epoch + 1, self.model.get_weights())
                    if epoch + 1 == msg.epochs:
                        state["best_epoch"] = epoch + 1
                        with timing.add("checkpoint"):
                            if tail is not None:
                                writer.save_weights(tail.mean(), checkpoint)
                            else:
                                writer.save(self.model, checkpoint)
                elif math.isfinite(val) and val > state["best"]:
                    state["best"], state["best_epoch"] = val, epoch + 1
                    with timing.add("checkpoint"):  # a memory copy: written when it ends
                        best.keep(self.model, epoch + 1)
                state["epochs"] = epoch + 1
                state["history"].append([epoch + 1, logs])
                if board is not None:
                    with timing.add("tensorboard"):
                        board.epoch(epoch + 1, logs)
                with timing.add("epoch_state"):
                    resume.snapshot(self.model, {"key": key, **_resumable(state)}, tail, best)

        _reset_peak_rss()
        started = time.perf_counter()
        timing = TrialTiming()
        writer = CheckpointWriter()
        best = BestWeights()
        board: EpochLog | None = None
        resume = EpochState(checkpoint.parent / EPOCH_STATE, writer, EPOCH_STATE_EVERY_S)
        initial_epoch = msg.initial_epoch
        fit_seconds = 0.0
        n_params = 0
        test_accuracy = fit_accuracy = None
        fit_n = 0
        try:
            if self.options.get("tensorboard", True):  # in here: a full disk fails it too
                board = EpochLog(
                    self.run_dir, trial_id, {k: getattr(msg.params, k) for k in PARAM_NAMES}
                )
            keras.utils.set_random_seed(msg.seed)
            params = msg.params
            with self.scope():
                with timing.add("build"):
                    model = build_alexnet(params)
                    n_params = int(model.count_params())
                if msg.warm_start:
                    with timing.add("warm_start"):
                        load_weights(model, Path(msg.warm_start))
                with timing.add("compile"):
                    compile_for_training(model, params, jit_compile=self.jit)
                initial_epoch = self._resume(model, resume.path, key, state, msg, tail, best)
            train, val = self.train, self.val
            order = msg.shuffle_seed if msg.shuffle_seed is not None else msg.seed
            if msg.refit:  # every choice is made: the validation (and test) images train too
                train = self.data.training_dataset(
                    ("train", "validation", "test") if msg.refit_test else ("train", "validation"),
                    self.batch_size,
                    augment=self.augment,
                    seed=order,
                )
            elif msg.fold or msg.shuffle_seed is not None:
                # a selection run validated on fold k of train (which validation trains), or a
                # judge run on the split as it is (fold 0), each in its own data order
                train, val = self.data.fold_datasets(
                    msg.fold, self.batch_size, augment=self.augment, seed=order
                )
            t0 = time.perf_counter()
            model.fit(
                train,
                validation_data=None if msg.refit else val,
                # nothing reads a selection run's validation before its tail: not computed
                validation_freq=list(range(max(1, msg.validate_from), msg.epochs + 1)),
                epochs=msg.epochs,
                initial_epoch=initial_epoch,
                verbose=0,
                callbacks=[Report()],
            )
            fit_seconds = time.perf_counter() - t0
            if not msg.refit and best.weights is not None:
                with timing.add("checkpoint"):
                    writer.save_weights(best.hand_off() or [], checkpoint)
            with timing.add("checkpoint_wait"):  # the last write, if it is not done yet
                writer.wait()
            status = "failed" if state["error"] else ("pruned" if state["pruned"] else "completed")
            error = state["error"]
            if status != "failed" and state["best_epoch"] is None:
                status, error = (
                    "failed",
                    (
                        "stopped before its last epoch"
                        if msg.refit
                        else "no finite validation accuracy"
                    ),
                )
            if status == "completed" and msg.test_predictions:
                # Confirmation runs only: the weights of the best validation epoch (a refit's
                # mean of its last epochs), scored once on the test set the search never saw.
                with timing.add("test_scoring"):
                    load_weights(model, checkpoint)
                    served = self._served(model, msg.params)
                    test_accuracy = self._score_test(served, Path(msg.test_predictions))
                    if msg.refit:  # did the weights it ships learn the images they fit?
                        fit_accuracy, fit_n = self._accuracy(served, ("train", "validation"))
        except Exception as exc:  # a failed trial is recorded; the search goes on
            status, error = "failed", f"{type(exc).__name__}: {str(exc)[:800]}"
            # full or read-only: every trial would fail alike, so the search stops, and this
            # trial is not recorded (the rerun trains it again, from its last saved epoch)
            room = no_room(
                exc, self.run_dir, needed_bytes=PEAK_WEIGHT_COPIES * 4 * n_params, fix=ROOM_FIX
            )
            if room is not None:
                status, error = NO_ROOM, str(room)
        except Interrupted:  # the last finished epoch goes to disk; the rerun starts there
            resume.flush()
            if board is not None:
                board.close(None)
            raise
        finally:
            with timing.add("teardown"):
                with contextlib.suppress(Exception):  # already failed: no write outlives it
                    writer.wait()
                writer.close()
                model = None
                # collects garbage itself: one more gc.collect() (as Keras Tuner does) finds
                # nothing and costs 0.2 s per trial
                clear_session()
        if board is not None:
            try:
                board.close(status)
            except Exception as exc:
                room = no_room(exc, self.run_dir, fix=ROOM_FIX)
                if room is None:
                    raise
                status, error = NO_ROOM, str(room)
        self.emit(
            Done(
                trial_id=trial_id,
                status=status,
                error=error,
                val_accuracy=state["best"] if state["best_epoch"] and not msg.refit else None,
                best_epoch=state["best_epoch"],
                epochs=state["epochs"],
                seconds=time.perf_counter() - started,
                fit_seconds=fit_seconds,
                params=n_params,
                peak_rss_mb=_read_peak_rss_mb(),
                disk_mb=state["disk_mb"],
                test_accuracy=test_accuracy,
                fit_accuracy=fit_accuracy,
                fit_n=fit_n,
                costs=timing.costs(fit_seconds),
            )
        )

    def _resume(
        self,
        model: Any,
        path: Path,
        key: str,
        state: dict[str, Any],
        msg: Train,
        tail: TailMean | None,
        best: BestWeights,
    ) -> int:
        """Continue an interrupted training from its last saved epoch (weights, optimizer,
        best so far and its weights, history, a refit's tail sum), re-announcing the epochs it
        had; the epoch to start at."""
        from models.checkpoint import CheckpointError, load_training_state, read_weights

        if not path.exists():
            return msg.initial_epoch
        meta = load_training_state(model, path, key, tail, best)
        if meta is None:  # another training's, or torn: this one starts from its beginning
            path.unlink(missing_ok=True)
            return msg.initial_epoch
        if meta.get("best_epoch") is not None and not msg.refit and best.epoch is None:
            # saved before the best weights lived in the state: they are in the checkpoint
            try:
                best.restore(read_weights(Path(msg.checkpoint)), int(meta["best_epoch"]))
            except CheckpointError:
                path.unlink(missing_ok=True)
                return msg.initial_epoch
        state.update({k: meta[k] for k in _RESUMABLE})
        state["best"] = -math.inf if state["best"] is None else state["best"]
        for epoch, metrics in state["history"]:
            self.emit(Epoch(msg.trial_id, int(epoch), metrics, 0.0, state["disk_mb"], resumed=True))
        return int(state["epochs"])

    def _served(self, model: Any, params: AlexNetParams) -> Any:
        """The trained model as the export serves it: in float32 whatever the training
        precision, so the refit's test score is the shipped model's own and every judge run
        is scored as its configuration would ship."""
        from models.alexnet import float32_twin

        return model if self.policy == "float32" else float32_twin(model, params)

    def _predict(self, model: Any, split: str) -> tuple[Any, Any]:
        """Predicted class of every image of ``split`` in file order, and their labels."""
        import numpy as np

        probs = model.predict(self.data.evaluation_dataset(split, self.batch_size), verbose=0)
        return np.argmax(probs, axis=1).astype(np.int16), self.data.cached.split(split)[1]

    def _accuracy(self, model: Any, splits: tuple[str, ...]) -> tuple[float, int]:
        """Accuracy on the images of ``splits`` together, and how many there are."""
        right = total = 0
        for split in splits:
            predicted, labels = self._predict(model, split)
            right, total = right + int((predicted == labels).sum()), total + len(labels)
        return right / max(total, 1), total

    def _score_test(self, model: Any, path: Path) -> float:
        """Predicted class of every test image, saved (atomically) in file order; accuracy."""
        import numpy as np

        from data_pipeline.files import write_bytes_atomic

        predicted, labels = self._predict(model, "test")
        buf = io.BytesIO()
        np.save(buf, predicted)
        write_bytes_atomic(path, buf.getvalue())
        return float(np.mean(predicted == labels))


EPOCH_STATE_EVERY_S = 30.0  # at most this much training lost to a kill -9
_RESUMABLE = ("best", "best_epoch", "epochs", "history", "disk_mb")


def _resumable(state: dict[str, Any]) -> dict[str, Any]:
    out = {k: state[k] for k in _RESUMABLE}
    out["best"] = None if not math.isfinite(out["best"]) else out["best"]  # JSON: no -inf
    return out


def _state_key(msg: Train) -> str:
    """What makes two trainings the same one (not where their files go): a saved state is
    resumed only by the training that wrote it."""
    import hashlib
    import json
    from dataclasses import asdict

    body = asdict(msg)
    # not where its files go, nor its id: an Optuna retry repeats a trial under a new number
    for name in ("checkpoint", "stop_file", "test_predictions", "trial_id"):
        body.pop(name)
    for name in ("refit_test", "fold"):  # states saved before these existed keep their keys
        if not body[name]:
            body.pop(name)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _visible_gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def main() -> int:
    die_with_parent()
    install(second_exits=False)
    try:
        return _serve()
    except Interrupted as exc:  # what a trial had is saved (TrialProcess.trial); no traceback
        return exc.exit_code


def _serve() -> int:
    out = _protocol_stream()
    try:
        setup = decode(sys.stdin.readline())
        if not isinstance(setup, Setup):
            raise TypeError(f"the first message must be Setup, not {type(setup).__name__}")
        process = TrialProcess(setup, out)
    except Exception as exc:
        out.write(encode(Failure(f"{type(exc).__name__}: {exc}")))
        return 1
    # What exists now (the libraries, the images) lives as long as the process: kept out of
    # every later garbage collection, so the one in clear_session at the end of each trial
    # looks at that trial's objects only (0.22 s -> 0.02 s per trial).
    gc.collect()
    gc.freeze()
    process.emit(
        Ready(
            pid=os.getpid(),
            policy=process.policy,
            xla=process.jit,
            precision_reason=process.device.reason,
            replicas=process.replicas,
            global_batch=process.batch_size,
            gpus=_visible_gpus(),
            data_seconds=process.data_seconds,
        )
    )
    for line in sys.stdin:
        msg = decode(line)
        if isinstance(msg, Warmup):
            try:
                process.warmup(msg)
            except Exception as exc:  # reported to the search, which stops with the reason
                process.emit(Failure(f"{type(exc).__name__}: {exc}"))
        elif isinstance(msg, Train):
            process.trial(msg)
        elif isinstance(msg, Exit):
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
