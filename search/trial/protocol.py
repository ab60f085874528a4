"""The messages between the search and its trial process, typed, in one place.

One JSON object per line: commands on the process's stdin, events on its stdout. ``encode``
adds the message's kind; ``decode`` gives back the dataclass, so neither side copies keys by
hand and a message that does not fit is an error at the boundary, not a ``KeyError`` later.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from models.alexnet import AlexNetParams
from search.rundir import RunConfig


class ProtocolError(RuntimeError):
    """A line from the other side that is not a message of this protocol."""


# ------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Setup:
    """The first line: the run whose data the process prepares and trains on."""

    run_dir: str
    config: RunConfig


@dataclass(frozen=True)
class Warmup:
    """Time a few training and evaluation steps of one model (the plan's estimates)."""

    params: AlexNetParams
    steps: int = 3


@dataclass(frozen=True)
class Train:
    """Train one model: a search trial, the baseline or a confirmation run."""

    trial_id: str
    params: AlexNetParams
    epochs: int  # train until this (cumulative) epoch
    checkpoint: str  # where the best validation epoch's weights go
    stop_file: str  # appears when the engine prunes the trial
    seed: int
    initial_epoch: int = 0
    warm_start: str | None = None  # a promoted trial starts from its parent's weights
    shuffle_seed: int | None = None  # a confirmation run's own data order
    test_predictions: str | None = None  # a confirmation run: score test, save predictions here
    refit: bool = False  # train on train + validation for exactly `epochs`, no validation
    refit_test: bool = False  # a refit trains on the test images too (--refit all)
    average_last: int = 0  # a refit keeps the mean of its last epochs' weights (0: the last)
    validate_from: int = 1  # the first epoch scored on validation (a selection run: its tail)
    fold: int = 0  # a selection run: validated on this fold of train (0: on validation)


@dataclass(frozen=True)
class Exit:
    pass


# --------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Ready:
    pid: int
    policy: str
    xla: bool
    replicas: int
    global_batch: int
    gpus: int
    data_seconds: float = 0.0  # mapping the image cache and building the datasets
    precision_reason: str = ""  # why this policy (search.devices.choose)


@dataclass(frozen=True)
class WarmupDone:
    train_img_s: float
    eval_img_s: float
    params: int
    policy: str
    xla: bool


@dataclass(frozen=True)
class Epoch:
    trial_id: str
    epoch: int
    metrics: dict[str, float]
    seconds: float
    disk_mb: float
    resumed: bool = False  # trained before an interruption, re-announced by the resumed run


@dataclass(frozen=True)
class Done:
    """How a training ended; ``failed`` ones carry the reason in ``error``."""

    trial_id: str
    status: str  # completed, failed, pruned, or NO_ROOM (not recorded: the search stops)
    error: str | None = None
    val_accuracy: float | None = None
    best_epoch: int | None = None
    epochs: int = 0
    seconds: float = 0.0
    fit_seconds: float = 0.0
    params: int = 0
    peak_rss_mb: float | None = None
    disk_mb: float = 0.0
    test_accuracy: float | None = None
    # a refit: its shipped weights' accuracy on the train + validation images it trained on,
    # and their number (did it learn at all? decided without reading test)
    fit_accuracy: float | None = None
    fit_n: int = 0
    costs: dict[str, float] = field(default_factory=dict)  # seconds per component


NO_ROOM = "no_room"  # its storage is full or read-only; ``error`` names the path it wrote


def failed(trial_id: str, error: str) -> Done:
    """The ``Done`` of a training that never reached the point of reporting one."""
    return Done(trial_id=trial_id, status="failed", error=error)


@dataclass(frozen=True)
class Failure:
    """The process could not do what it was asked (start, warm-up)."""

    error: str


Message = Setup | Warmup | Train | Exit | Ready | WarmupDone | Epoch | Done | Failure
_KINDS: dict[str, type] = {
    c.__name__: c for c in (Setup, Warmup, Train, Exit, Ready, WarmupDone, Epoch, Done, Failure)
}


def encode(msg: Message) -> str:
    """One line of JSON for ``msg``."""
    if isinstance(msg, Setup):
        body: dict[str, Any] = {"run_dir": msg.run_dir, "config": msg.config.to_json()}
    else:
        body = asdict(msg)
    return json.dumps({"kind": type(msg).__name__, **body}) + "\n"


def decode(line: str) -> Message:
    """The message on one line, or a ``ProtocolError`` that quotes it."""
    try:
        body = json.loads(line)
        cls = _KINDS[body.pop("kind")]
        if cls is Setup:
            return Setup(run_dir=body["run_dir"], config=RunConfig.from_json(body["config"]))
        if "params" in body and cls in (Warmup, Train):
            body["params"] = AlexNetParams(**body["params"])
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in body.items() if k in names})  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(
            f"not a message of the trial protocol ({exc!r}): {line[:300]!r}"
        ) from None
