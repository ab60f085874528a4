"""TensorBoard logs of a search, where Keras users already look: ``RUN_DIR/tensorboard/``.

One TensorBoard run per training (``trial-0012``, ``baseline``, ``select-0012-s1``,
``confirm-0012-s2``, ``refit-0012``), each with ``train/`` and ``validation/`` event files
holding ``epoch_loss`` and ``epoch_accuracy`` as Keras's own TensorBoard callback names them,
written as each epoch ends. The HParams dashboard gets the experiment (every parameter of the
run's space with its domain, from ``search.space``) and one session per search trial and the
baseline, with its parameter values and its end status. Epochs are counted as the results
table counts them: a promoted Hyperband trial's steps continue its parent's.

Resumption: an interrupted training resumes at its last saved epoch and writes only epochs it
trains; an epoch written before a ``kill -9`` but not saved is written again with the same
step, which TensorBoard's reader treats as a restart and keeps the later value of.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

LOGDIR = "tensorboard"
METRICS = (
    ("epoch_accuracy", "validation"),
    ("epoch_loss", "validation"),
    ("epoch_accuracy", "train"),
    ("epoch_loss", "train"),
)


def run_name(trial_id: str) -> str:
    """A search trial's TensorBoard run is ``trial-<id>``; other trainings keep their id."""
    return f"trial-{trial_id}" if trial_id.isdigit() else trial_id


def is_session(trial_id: str) -> bool:
    """Search trials and the baseline are HParams sessions; confirmation runs log curves only."""
    return trial_id.isdigit() or trial_id == "baseline"


def write_experiment(run_dir: Path, space: Any) -> None:
    """The HParams experiment: each parameter of ``space`` with its domain, and the metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    hparams = [hp.HParam(p.name, p.hparam_domain()) for p in space]
    metrics = [
        hp.Metric(tag, group=group, display_name=f"{group} {tag.removeprefix('epoch_')}")
        for tag, group in METRICS
    ]
    writer = tf.summary.create_file_writer(str(Path(run_dir) / LOGDIR))
    with writer.as_default():
        hp.hparams_config(hparams=hparams, metrics=metrics)
    writer.close()


class EpochLog:
    """One training's TensorBoard run: per-epoch scalars, and its HParams session."""

    def __init__(self, run_dir: Path, trial_id: str, values: dict[str, Any]) -> None:
        self.root = Path(run_dir) / LOGDIR / run_name(trial_id)
        self.session = is_session(trial_id)
        self._writers: dict[str, Any] = {}  # made at their first scalar: a refit has no validation
        if self.session:
            import tensorflow as tf
            from tensorboard.plugins.hparams import api as hp

            self._session = tf.summary.create_file_writer(str(self.root))
            with self._session.as_default():
                hp.hparams(_plain(values), trial_id=trial_id, start_time_secs=int(time.time()))
            self._session.flush()

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        """Epoch ``epoch`` (1-based, cumulative) of Keras's ``logs``, flushed at once so a
        running TensorBoard shows it."""
        import tensorflow as tf

        for split, prefix in (("train", ""), ("validation", "val_")):
            scalars = {
                name: logs[prefix + name] for name in ("loss", "accuracy") if prefix + name in logs
            }
            if not scalars:
                continue
            if split not in self._writers:
                self._writers[split] = tf.summary.create_file_writer(str(self.root / split))
            writer = self._writers[split]
            with writer.as_default():
                for name, value in scalars.items():
                    tf.summary.scalar(f"epoch_{name}", value, step=epoch)
            writer.flush()

    def close(self, status: str | None) -> None:
        """End the session: ``completed`` and ``pruned`` as success, ``failed`` as failure;
        None (interrupted) leaves it running, for the resumed training to end."""
        if self.session and status is not None:
            import tensorflow as tf
            from tensorboard.plugins.hparams import api_pb2
            from tensorboard.plugins.hparams import summary as hs

            code = "STATUS_FAILURE" if status == "failed" else "STATUS_SUCCESS"
            with self._session.as_default():
                tf.summary.experimental.write_raw_pb(
                    hs.session_end_pb(api_pb2.Status.Value(code)).SerializeToString(), step=0
                )
        for writer in self._writers.values():
            writer.close()
        if self.session:
            self._session.close()


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """HParams takes bool, int, float and str only (numpy scalars are not those)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if hasattr(value, "item"):
            value = value.item()
        out[key] = value if isinstance(value, bool | int | float | str) else str(value)
    return out
