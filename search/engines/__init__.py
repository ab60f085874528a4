"""Search engines: one small base (``base.SearchEngine``), Keras Tuner's three oracles and
Optuna's TPE. ``make_engine`` is the only place that maps an ``--engine`` name to a class."""

from __future__ import annotations

from search.engines.base import WAIT, EngineSettings, SearchEngine, TrialOutcome, TrialSpec
from search.space import Space

ENGINES = ("hyperband", "random", "bayesian", "optuna")
OBJECTIVES = ("accuracy", "accuracy,params")  # --objective; the second: Optuna only

__all__ = [
    "ENGINES",
    "OBJECTIVES",
    "WAIT",
    "EngineSettings",
    "SearchEngine",
    "TrialOutcome",
    "TrialSpec",
    "make_engine",
]


def make_engine(name: str, space: Space, settings: EngineSettings) -> SearchEngine:
    """The engine called ``name`` (one of ``ENGINES``); libraries load only when asked for."""
    if name == "optuna":
        from search.engines.optuna_tpe import OptunaEngine

        return OptunaEngine(space, settings)
    from search.engines.keras_tuner import (
        BayesianEngine,
        HyperbandEngine,
        KerasTunerEngine,
        RandomSearchEngine,
    )

    classes: dict[str, type[KerasTunerEngine]] = {
        "hyperband": HyperbandEngine,
        "random": RandomSearchEngine,
        "bayesian": BayesianEngine,
    }
    if name not in classes:
        raise ValueError(f"engine must be one of {ENGINES}, but got {name=}.")
    return classes[name](space, settings)
