"""The search space, as data: every parameter is defined once here, with everything about it.

A parameter knows its range and its blog (baseline) value, how Keras Tuner and Optuna sample it,
how its value reads back from the results table, how a report plots it (log, linear or
categorical axis), how a ``--space`` TOML table changes it, and how it is described. Nothing
outside this module names a parameter: the results table, the engines, the reports and the
export iterate over the space. Adding a hyperparameter means adding it to ``DEFAULT_SPACE`` and
giving the model builder's ``AlexNetParams`` a field of the same name.

The model builder never sees a ``HyperParameters`` object or an Optuna trial: ``resolve`` turns
chosen values into an ``AlexNetParams``.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from models.alexnet import AlexNetParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Axis = Literal["linear", "log", "category"]


class SpaceError(ValueError):
    """An invalid search space (bad range, unknown parameter): exit code 2 with the message."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _truthy(value: Any) -> bool:
    """A boolean as the results table spells it (``True``, ``1``, ``1.0``, numpy bools)."""
    return str(value).strip().lower() in ("true", "1", "1.0")


def _check_range(name: str, low: float, high: float, domain: tuple[float, float]) -> None:
    lo, hi = domain
    if not low < high:
        raise SpaceError(
            f"{name}: low must be below high, but got low={low}, high={high}; to fix a value "
            "use `value = ...`."
        )
    if low < lo or high > hi:
        raise SpaceError(f"{name}: range must lie within [{lo}, {hi}], but got [{low}, {high}].")


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    baseline: float
    log: bool = False
    domain: tuple[float, float] = (-math.inf, math.inf)  # hard limits, whatever a file says

    searched: ClassVar[bool] = True

    @property
    def axis(self) -> Axis:
        return "log" if self.log else "linear"

    def check(self) -> FloatParam:
        _check_range(self.name, self.low, self.high, self.domain)
        if self.log and self.low <= 0:
            raise SpaceError(f"{self.name}: a log range needs low > 0, but got low={self.low}.")
        return self

    def check_value(self, value: Any) -> Any:
        lo, hi = self.domain
        if not _is_number(value) or not lo <= value <= hi:
            raise SpaceError(
                f"{self.name}: value must be a number in [{lo}, {hi}], but got {value!r}."
            )
        return float(value)

    def override(self, table: dict[str, Any]) -> FloatParam:
        _allowed(self.name, table, {"low", "high", "log"})
        for key in ("low", "high"):
            if key in table and not _is_number(table[key]):
                raise SpaceError(f"{self.name}: {key} must be a number, but got {table[key]!r}.")
        if "log" in table and not isinstance(table["log"], bool):
            raise SpaceError(f"{self.name}: log must be true or false, but got {table['log']!r}.")
        changes: dict[str, Any] = {k: float(v) if k != "log" else v for k, v in table.items()}
        return replace(self, **changes).check()

    def coerce(self, value: Any) -> float:
        return float(value)

    def plot_value(self, value: Any) -> float:
        return math.log10(float(value)) if self.log else float(value)

    def format(self, value: Any) -> str:
        return f"{float(value):.2e}" if self.log else f"{float(value):.4f}"

    def to_keras_tuner(self, hp: Any) -> None:
        hp.Float(self.name, self.low, self.high, sampling="log" if self.log else "linear")

    def hparam_domain(self) -> Any:
        """Its domain in TensorBoard's HParams dashboard."""
        from tensorboard.plugins.hparams import api as hp

        return hp.RealInterval(
            float(min(self.low, self.baseline)), float(max(self.high, self.baseline))
        )

    def suggest(self, trial: Any) -> float:
        return float(trial.suggest_float(self.name, self.low, self.high, log=self.log))

    def distribution(self) -> Any:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log)

    def draw(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.low:g} to {self.high:g}{' (log)' if self.log else ''}, "
            f"blog {self.baseline:g}"
        )

    def toml(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log}

    @property
    def range(self) -> tuple[float, float]:
        return (self.low, self.high)


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    baseline: int
    step: int = 1
    domain: tuple[int, int] = (-(2**62), 2**62)

    searched: ClassVar[bool] = True
    axis: ClassVar[Axis] = "linear"

    def check(self) -> IntParam:
        _check_range(self.name, self.low, self.high, self.domain)
        if self.step < 1 or (self.high - self.low) % self.step:
            raise SpaceError(
                f"{self.name}: step must be >= 1 and divide high - low, but got "
                f"step={self.step} for [{self.low}, {self.high}]."
            )
        return self

    def check_value(self, value: Any) -> Any:
        lo, hi = self.domain
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise SpaceError(
                f"{self.name}: value must be an integer in [{lo}, {hi}], but got {value!r}."
            )
        return value

    def override(self, table: dict[str, Any]) -> IntParam:
        _allowed(self.name, table, {"low", "high", "step"})
        for key, v in table.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise SpaceError(f"{self.name}: {key} must be an integer, but got {v!r}.")
        return replace(self, **table).check()

    def coerce(self, value: Any) -> int:
        return int(float(value))

    def plot_value(self, value: Any) -> float:
        return float(value)

    def format(self, value: Any) -> str:
        return str(self.coerce(value))

    def to_keras_tuner(self, hp: Any) -> None:
        hp.Int(self.name, self.low, self.high, step=self.step)

    def hparam_domain(self) -> Any:
        from tensorboard.plugins.hparams import api as hp

        return hp.IntInterval(int(min(self.low, self.baseline)), int(max(self.high, self.baseline)))

    def suggest(self, trial: Any) -> int:
        return int(trial.suggest_int(self.name, self.low, self.high, step=self.step))

    def distribution(self) -> Any:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, step=self.step)

    def draw(self, rng: random.Random) -> int:
        return self.low + self.step * rng.randrange((self.high - self.low) // self.step + 1)

    def describe(self) -> str:
        return f"{self.name}: {self.low} to {self.high} step {self.step}, blog {self.baseline}"

    def toml(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "step": self.step}

    @property
    def range(self) -> tuple[float, float]:
        return (float(self.low), float(self.high))


@dataclass(frozen=True)
class BoolParam:
    name: str
    baseline: bool

    searched: ClassVar[bool] = True
    axis: ClassVar[Axis] = "category"

    @property
    def range(self) -> tuple[float, float] | None:
        return None

    def check(self) -> BoolParam:
        return self

    def check_value(self, value: Any) -> Any:
        if not isinstance(value, bool):
            raise SpaceError(f"{self.name}: value must be true or false, but got {value!r}.")
        return value

    def override(self, table: dict[str, Any]) -> BoolParam:
        _allowed(self.name, table, set())
        return self

    def coerce(self, value: Any) -> bool:
        return value if isinstance(value, bool) else _truthy(value)

    def plot_value(self, value: Any) -> float:
        return 1.0 if self.coerce(value) else 0.0

    def format(self, value: Any) -> str:
        return str(self.coerce(value))

    def to_keras_tuner(self, hp: Any) -> None:
        hp.Boolean(self.name)

    def hparam_domain(self) -> Any:
        from tensorboard.plugins.hparams import api as hp

        return hp.Discrete([False, True])

    def suggest(self, trial: Any) -> bool:
        return bool(trial.suggest_categorical(self.name, [True, False]))

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution([True, False])

    def draw(self, rng: random.Random) -> bool:
        return rng.random() < 0.5

    def describe(self) -> str:
        return f"{self.name}: on/off, blog {'on' if self.baseline else 'off'}"

    def toml(self) -> dict[str, Any]:
        return {}  # searched over both values; only `value = ...` changes it


OpenParam = FloatParam | IntParam | BoolParam


@dataclass(frozen=True)
class FixedParam:
    """A parameter held at ``value``; ``of`` is the open form a ``--space`` table restores
    (``[name] low = ...`` searches it again over ``of``'s range with the new bounds)."""

    name: str
    value: Any
    baseline: Any
    of: OpenParam

    searched: ClassVar[bool] = False

    @property
    def axis(self) -> Axis:
        return self.of.axis

    @property
    def range(self) -> tuple[float, float] | None:
        return None

    def check(self) -> FixedParam:
        return replace(self, value=self.of.check_value(self.value))

    def override(self, table: dict[str, Any]) -> Param:
        return _override(self.of, table)

    def coerce(self, value: Any) -> Any:
        return self.of.coerce(value)

    def plot_value(self, value: Any) -> float:
        return self.of.plot_value(value)

    def format(self, value: Any) -> str:
        return self.of.format(value)

    def to_keras_tuner(self, hp: Any) -> None:
        hp.Fixed(self.name, self.value)

    def hparam_domain(self) -> Any:
        """The fixed value, and the blog's (the baseline's session) where it differs."""
        from tensorboard.plugins.hparams import api as hp

        values = sorted({self.coerce(self.value), self.coerce(self.baseline)})
        return hp.Discrete(values)

    def suggest(self, trial: Any) -> Any:
        return self.value

    def distribution(self) -> Any:
        return None

    def draw(self, rng: random.Random) -> Any:
        return self.value

    def describe(self) -> str:
        return f"{self.name}: fixed at {self.value}, blog {self.baseline}"

    def toml(self) -> dict[str, Any]:
        return {"value": self.value}


Param = FloatParam | IntParam | BoolParam | FixedParam
Space = tuple[Param, ...]


def _fixed(p: OpenParam, value: Any) -> FixedParam:
    return FixedParam(p.name, value, p.baseline, of=p).check()


DEFAULT_SPACE: Space = (
    FloatParam("dropout", 0.0, 0.6, baseline=0.25, domain=(0.0, 0.95)),
    BoolParam("lrn", baseline=True),
    IntParam("dense_units", 512, 4096, baseline=4096, step=512, domain=(1, 65536)),
    FloatParam("learning_rate", 1e-5, 1e-3, baseline=1e-5, log=True, domain=(1e-8, 1.0)),
    # L2 on the conv and dense kernels; the blog has none. Fixed at 0 unless a --space file
    # opens it, e.g. `[weight_decay] low = 1e-6` searches the log range 1e-6..1e-3.
    _fixed(FloatParam("weight_decay", 1e-6, 1e-3, baseline=0.0, log=True, domain=(0.0, 1.0)), 0.0),
)
PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in DEFAULT_SPACE)
"""Every parameter of every space (a ``--space`` file changes ranges, never the names): the
parameter columns of the results tables."""


def baseline_values(space: Space = DEFAULT_SPACE) -> dict[str, Any]:
    """The blog's value of every parameter."""
    return {p.name: p.baseline for p in space}


def sample(space: Space, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` configurations drawn at random from ``space`` (its priors, as the random search
    and a Hyperband bracket's first round draw them): what an unknown trial looks like on
    average, e.g. to the ETA. The same for a given ``seed``."""
    rng = random.Random(seed)
    return [{p.name: p.draw(rng) for p in space} for _ in range(n)]


def searched(space: Space) -> tuple[OpenParam, ...]:
    """The parameters the search varies (not the fixed ones): what the report plots."""
    return tuple(p for p in space if not isinstance(p, FixedParam))


def values_of(space: Space, row: Any) -> dict[str, Any]:
    """Every parameter's value from a results row (a pandas row or a mapping), in its type.

    A row from before a parameter existed (an older results file) has the baseline value.
    """
    out = {}
    for p in space:
        raw = row.get(p.name) if hasattr(row, "get") else row[p.name]
        missing = raw is None or (isinstance(raw, float) and math.isnan(raw))
        out[p.name] = p.baseline if missing else p.coerce(raw)
    return out


def _allowed(name: str, table: dict[str, Any], keys: set[str]) -> None:
    unknown = set(table) - keys - {"value"}
    if unknown:
        allowed = sorted(keys | {"value"})
        raise SpaceError(f"{name}: unknown key(s) {sorted(unknown)}; allowed: {allowed}.")


def _override(p: Param, table: dict[str, Any]) -> Param:
    if "value" not in table:
        return p.override(table)
    if len(table) > 1:
        raise SpaceError(
            f"{p.name}: `value` fixes the parameter and cannot be combined "
            f"with {sorted(set(table) - {'value'})}."
        )
    open_form = p.of if isinstance(p, FixedParam) else p
    return _fixed(open_form, table["value"])


def load_space(path: Path | None) -> Space:
    """The default space, with the parameters named in a TOML file overridden or fixed.

    ``[learning_rate] low = 1e-4`` narrows a range; ``[lrn] value = false`` fixes a parameter;
    ``[weight_decay] high = 1e-4`` opens a parameter that is fixed by default.
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


def parse_space(text: str, *, source: str = "--space") -> Space:
    """The default space with the overrides of a TOML document (see ``load_space``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"--space file {source!r} is not valid TOML: {exc}.") from None
    unknown = set(doc) - set(PARAM_NAMES)
    if unknown:
        raise SpaceError(
            f"--space file {source!r}: unknown parameter(s) {sorted(unknown)}; "
            f"known: {list(PARAM_NAMES)}."
        )
    out = []
    for p in DEFAULT_SPACE:
        table = doc.get(p.name)
        if table is not None and not isinstance(table, dict):
            raise SpaceError(f"{p.name}: expected a table like [{p.name}], got {table!r}.")
        out.append(_override(p, table) if table else p)
    return tuple(out)


def format_values(values: dict[str, Any], space: Space = DEFAULT_SPACE) -> str:
    """``dropout 0.0920, lrn True, ...``: a configuration as each parameter prints itself."""
    return ", ".join(f"{p.name} {p.format(values[p.name])}" for p in space if p.name in values)


def format_searched(values: dict[str, Any], space: Space = DEFAULT_SPACE) -> str:
    """The searched parameters only, for a trial's console line."""
    return format_values(values, tuple(p for p in space if p.searched))


def format_against_blog(values: dict[str, Any], space: Space = DEFAULT_SPACE) -> str:
    """``dropout 0.0920 (blog 0.2500), lrn True (as blog), ...``: the winner beside the blog's
    configuration; a parameter held at the blog's value is left out."""
    parts = []
    for p in space:
        if p.name not in values:
            continue
        value, blog = p.coerce(values[p.name]), p.coerce(p.baseline)
        if not p.searched and value == blog:
            continue
        same = p.format(value) == p.format(blog)
        parts.append(
            f"{p.name} {p.format(value)} ({'as blog' if same else 'blog ' + p.format(blog)})"
        )
    return ", ".join(parts)


def describe(space: Space) -> list[str]:
    """One human line per parameter, for the plan and the report."""
    return [p.describe() for p in space]


def to_toml(space: Space) -> str:
    """The ``--space`` file that gives ``space`` (``parse_space(to_toml(s)) == s``): every
    parameter's table, so a run's space can be reused or edited as a file."""
    lines = []
    for p in space:
        table = p.toml()
        lines.append(f"[{p.name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)


_TYPES: dict[str, type] = {c.__name__: c for c in (FloatParam, IntParam, BoolParam, FixedParam)}


def to_dict(space: Space) -> list[dict[str, Any]]:
    """JSON-ready description (config.json, reports); ``from_dict`` reads it back."""

    def one(p: Param) -> dict[str, Any]:
        body = asdict(p)
        if isinstance(p, FixedParam):
            body["of"] = one(p.of)
        return {"type": type(p).__name__, **body}

    return [one(p) for p in space]


def from_dict(items: list[dict[str, Any]]) -> Space:
    """The space a run used, from its ``config.json``; a parameter missing from an older run's
    file is the default's (so a new parameter reads as fixed at its baseline there)."""
    by_name: dict[str, Param] = {}
    for item in items:
        by_name[item["name"]] = _param_from_dict(item)
    return tuple(by_name.get(p.name, p) for p in DEFAULT_SPACE)


def _param_from_dict(item: dict[str, Any]) -> Param:
    body = {k: v for k, v in item.items() if k != "type"}
    cls = _TYPES.get(item.get("type", ""))
    default = next((p for p in DEFAULT_SPACE if p.name == body.get("name")), None)
    if cls is None or default is None:
        raise SpaceError(f"unknown parameter in a run's space: {item!r}.")
    if cls is FixedParam:
        of = body.get("of")
        open_form = (
            _param_from_dict(of)
            if isinstance(of, dict)
            else (default.of if isinstance(default, FixedParam) else default)
        )
        return FixedParam(body["name"], body["value"], body["baseline"], of=open_form)  # type: ignore[arg-type]
    names = {f.name for f in fields(cls)}
    kwargs = {k: tuple(v) if k == "domain" else v for k, v in body.items() if k in names}
    return cls(**kwargs)


def to_keras_tuner(space: Space) -> Any:
    """Keras Tuner ``HyperParameters`` for the searched parameters of the space.

    Fixed ones are left out (``complete`` adds their values): Keras Tuner draws a seed for every
    hyperparameter it holds, ``Fixed`` ones included, so a parameter held fixed would change
    every trial a seed gives after the first, and adding one to the space would change the
    searches of everyone who does not open it.
    """
    import keras_tuner as kt

    hp = kt.HyperParameters()
    for p in searched(space):
        p.to_keras_tuner(hp)
    return hp


def complete(space: Space, chosen: dict[str, Any]) -> dict[str, Any]:
    """Every parameter's value: the searched ones as chosen, the fixed ones at their value."""
    return {p.name: p.value if isinstance(p, FixedParam) else chosen[p.name] for p in space}


def suggest_optuna(trial: Any, space: Space) -> dict[str, Any]:
    """Values for one Optuna trial (fixed parameters are returned, not suggested)."""
    return {p.name: p.suggest(trial) for p in space}


def resolve(
    values: dict[str, Any],
    *,
    image_size: int,
    width: float,
    num_classes: int,
    space: Space = DEFAULT_SPACE,
) -> AlexNetParams:
    """Plain model parameters from chosen values (engine bookkeeping keys are ignored)."""
    missing = [p.name for p in space if p.name not in values]
    if missing:
        raise SpaceError(f"values for {missing} are missing from {values!r}.")
    chosen: dict[str, Any] = {p.name: p.coerce(values[p.name]) for p in space}
    for name, value in chosen.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise SpaceError(f"{name} must be finite, but got {value}.")
    return AlexNetParams(**chosen, image_size=image_size, width=width, num_classes=num_classes)
