"""The search space, as data: defined once here, translated to Keras Tuner and to Optuna.

Each parameter carries the blog's value as its baseline. The model builder never sees a
``HyperParameters`` object or an Optuna trial: ``resolve`` turns chosen values into an
``AlexNetParams``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.alexnet import AlexNetParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class SpaceError(ValueError):
    """An invalid search space (bad range, unknown parameter): exit code 2 with the message."""


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    baseline: float
    log: bool = False


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    baseline: int
    step: int = 1


@dataclass(frozen=True)
class BoolParam:
    name: str
    baseline: bool


@dataclass(frozen=True)
class FixedParam:
    name: str
    value: Any
    baseline: Any


Param = FloatParam | IntParam | BoolParam | FixedParam
SEARCHED = ("dropout", "lrn", "dense_units", "learning_rate")
# Hard limits of each parameter's domain, whatever a space file says.
_DOMAIN = {
    "dropout": (0.0, 0.95),
    "dense_units": (1, 65536),
    "learning_rate": (1e-8, 1.0),
}

DEFAULT_SPACE: tuple[Param, ...] = (
    FloatParam("dropout", 0.0, 0.6, baseline=0.25),
    BoolParam("lrn", baseline=True),
    IntParam("dense_units", 512, 4096, baseline=4096, step=512),
    FloatParam("learning_rate", 1e-5, 1e-3, baseline=1e-5, log=True),
)


def baseline_values(space: tuple[Param, ...] = DEFAULT_SPACE) -> dict[str, Any]:
    """The blog's value of every parameter."""
    return {p.name: p.baseline for p in space}


def _check(p: Param) -> Param:
    if isinstance(p, FloatParam | IntParam):
        lo, hi = _DOMAIN[p.name]
        if not p.low < p.high:
            raise SpaceError(
                f"{p.name}: low must be below high, but got low={p.low}, "
                f"high={p.high}; to fix a value use `value = ...`."
            )
        if p.low < lo or p.high > hi:
            raise SpaceError(
                f"{p.name}: range must lie within [{lo}, {hi}], but got [{p.low}, {p.high}]."
            )
    if isinstance(p, FloatParam) and p.log and p.low <= 0:
        raise SpaceError(f"{p.name}: a log range needs low > 0, but got low={p.low}.")
    if isinstance(p, IntParam) and (p.step < 1 or (p.high - p.low) % p.step):
        raise SpaceError(
            f"{p.name}: step must be >= 1 and divide high - low, but got "
            f"step={p.step} for [{p.low}, {p.high}]."
        )
    if isinstance(p, FixedParam) and p.name in _DOMAIN:
        lo, hi = _DOMAIN[p.name]
        if (
            not isinstance(p.value, int | float)
            or isinstance(p.value, bool)
            or not lo <= p.value <= hi
        ):
            raise SpaceError(
                f"{p.name}: value must be a number in [{lo}, {hi}], but got {p.value!r}."
            )
    if isinstance(p, FixedParam) and p.name == "lrn" and not isinstance(p.value, bool):
        raise SpaceError(f"lrn: value must be true or false, but got {p.value!r}.")
    return p


def _override(p: Param, table: dict[str, Any]) -> Param:
    allowed = (
        {"value"}
        | ({"low", "high", "log"} if isinstance(p, FloatParam) else set())
        | ({"low", "high", "step"} if isinstance(p, IntParam) else set())
    )
    unknown = set(table) - allowed
    if unknown:
        raise SpaceError(f"{p.name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}.")
    if "value" in table:
        if len(table) > 1:
            raise SpaceError(
                f"{p.name}: `value` fixes the parameter and cannot be combined "
                f"with {sorted(set(table) - {'value'})}."
            )
        value = table["value"]
        if p.name == "dense_units" and isinstance(value, float) and value.is_integer():
            value = int(value)
        return _check(FixedParam(p.name, value, p.baseline))
    if isinstance(p, FloatParam):
        for key in ("low", "high"):
            if key in table and (
                not isinstance(table[key], int | float) or isinstance(table[key], bool)
            ):
                raise SpaceError(f"{p.name}: {key} must be a number, but got {table[key]!r}.")
        return _check(
            FloatParam(
                p.name,
                float(table.get("low", p.low)),
                float(table.get("high", p.high)),
                baseline=p.baseline,
                log=bool(table.get("log", p.log)),
            )
        )
    if isinstance(p, IntParam):
        for key, v in table.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise SpaceError(f"{p.name}: {key} must be an integer, but got {v!r}.")
        return _check(replace(p, **table))
    raise SpaceError(f"{p.name}: can only be fixed with `value = true|false`.")


def load_space(path: Path | None) -> tuple[Param, ...]:
    """The default space, with the parameters named in a TOML file overridden or fixed.

    ``[learning_rate] low = 1e-4`` narrows a range; ``[lrn] value = false`` fixes a parameter.
    """
    if path is None:
        return DEFAULT_SPACE
    return parse_space(read_space_file(path), source=str(path))


def read_space_file(path: Path) -> str:
    """The text of a --space file, or a ``SpaceError`` that says what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise SpaceError(f"--space file {str(path)!r} does not exist.")
    if not path.is_file():
        raise SpaceError(f"--space {str(path)!r} is not a file; give a TOML file like space.toml.")
    if path.stat().st_size > 1 << 20:
        raise SpaceError(f"--space file {str(path)!r} is over 1 MiB: not a search space.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpaceError(
            f"--space file {str(path)!r} is not UTF-8 text; save it as a UTF-8 TOML file."
        ) from None
    except OSError as exc:
        raise SpaceError(f"--space file {str(path)!r} cannot be read: {exc.strerror}.") from None


def parse_space(text: str, *, source: str = "--space") -> tuple[Param, ...]:
    """The default space with the overrides of a TOML document (see ``load_space``)."""
    path = source
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"--space file {str(path)!r} is not valid TOML: {exc}.") from None
    unknown = set(doc) - set(SEARCHED)
    if unknown:
        raise SpaceError(
            f"--space file {str(path)!r}: unknown parameter(s) {sorted(unknown)}; "
            f"known: {list(SEARCHED)}."
        )
    out = []
    for p in DEFAULT_SPACE:
        table = doc.get(p.name)
        if table is not None and not isinstance(table, dict):
            raise SpaceError(f"{p.name}: expected a table like [{p.name}], got {table!r}.")
        out.append(_override(p, table) if table else p)
    return tuple(out)


def describe(space: tuple[Param, ...]) -> list[str]:
    """One human line per parameter, for the plan and the report."""
    lines = []
    for p in space:
        if isinstance(p, FloatParam):
            lines.append(
                f"{p.name}: {p.low:g} to {p.high:g}{' (log)' if p.log else ''}, blog {p.baseline:g}"
            )
        elif isinstance(p, IntParam):
            lines.append(f"{p.name}: {p.low} to {p.high} step {p.step}, blog {p.baseline}")
        elif isinstance(p, BoolParam):
            lines.append(f"{p.name}: on/off, blog {'on' if p.baseline else 'off'}")
        else:
            lines.append(f"{p.name}: fixed at {p.value}, blog {p.baseline}")
    return lines


def to_dict(space: tuple[Param, ...]) -> list[dict[str, Any]]:
    """JSON-ready description (config.json, reports)."""
    return [{"type": type(p).__name__, **p.__dict__} for p in space]


def to_keras_tuner(space: tuple[Param, ...]):
    """Keras Tuner ``HyperParameters`` for the space."""
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in space:
        if isinstance(p, FloatParam):
            hp.Float(p.name, p.low, p.high, sampling="log" if p.log else "linear")
        elif isinstance(p, IntParam):
            hp.Int(p.name, p.low, p.high, step=p.step)
        elif isinstance(p, BoolParam):
            hp.Boolean(p.name)
        else:
            hp.Fixed(p.name, p.value)
    return hp


def suggest_optuna(trial: Any, space: tuple[Param, ...]) -> dict[str, Any]:
    """Values for one Optuna trial (fixed parameters are returned, not suggested)."""
    values: dict[str, Any] = {}
    for p in space:
        if isinstance(p, FloatParam):
            values[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif isinstance(p, IntParam):
            values[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step)
        elif isinstance(p, BoolParam):
            values[p.name] = trial.suggest_categorical(p.name, [True, False])
        else:
            values[p.name] = p.value
    return values


def resolve(
    values: dict[str, Any], *, image_size: int, width: float, num_classes: int
) -> AlexNetParams:
    """Plain model parameters from chosen values (engine bookkeeping keys are ignored)."""
    missing = [name for name in SEARCHED if name not in values]
    if missing:
        raise SpaceError(f"values for {missing} are missing from {values!r}.")
    lr = float(values["learning_rate"])
    if not math.isfinite(lr):
        raise SpaceError(f"learning_rate must be finite, but got {lr}.")
    return AlexNetParams(
        dropout=float(values["dropout"]),
        lrn=bool(values["lrn"]),
        dense_units=int(values["dense_units"]),
        learning_rate=lr,
        image_size=image_size,
        width=width,
        num_classes=num_classes,
    )
