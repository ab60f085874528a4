"""Every use of Keras Tuner's private API, in one place.

Keras Tuner has no public way to read Hyperband's bracket geometry, to quiet an oracle's
display, to point an oracle at a directory without a tuner, or to serve an oracle over gRPC
without a tuner. These helpers do it with its private names; ``check`` tries each of them, so a
Keras Tuner release that changes one fails at once with a message that names it (and
``tests/test_engines.py`` runs ``check`` on the installed version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from data_pipeline.files import write_text_atomic
from search.rundir import RunDirError

TESTED = "1.4"  # the Keras Tuner release line these helpers were written against


def quiet(oracle: Any) -> None:
    """No per-trial printout: the search has its own progress display."""
    oracle._display.verbose = 0


def atomic_saves() -> None:
    """Make Keras Tuner write its state files atomically.

    It writes ``oracle.json`` and each ``trial.json`` in place, so a search killed during a
    write (a ``kill -9`` just after a trial ends) leaves a torn file that its ``reload`` cannot
    parse, and the run could not be resumed. Its ``Stateful.save`` calls
    ``keras_tuner.src.utils.save_json``; this replaces that function with one that writes a
    temporary file, syncs it and renames it over the old one.
    """
    from keras_tuner.src import utils

    if getattr(utils.save_json, "atomic", False):
        return

    def save_json(path: str, obj: Any) -> str:
        text = json.dumps(obj)
        write_text_atomic(Path(path), text)
        return text

    save_json.atomic = True  # type: ignore[attr-defined]
    utils.save_json = save_json


def attach(oracle: Any, state_dir: Path) -> None:
    """Keep the oracle's state in ``state_dir/keras_tuner``, reloading what is there."""
    oracle._set_project_dir(str(state_dir), "keras_tuner")
    if not (Path(state_dir) / "keras_tuner" / "oracle.json").exists():
        return
    try:
        oracle.reload()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"Keras Tuner's state in {Path(state_dir) / 'keras_tuner'} is damaged ({exc}): a "
            "file torn by a crash during its write. The finished trials are safe in "
            "trials.csv, but this search cannot be continued; start a new --run-dir."
        ) from None
    forget_unrecorded(oracle)


def forget_unrecorded(oracle: Any) -> None:
    """Drop the trials Keras Tuner wrote but never recorded.

    Its ``create_trial`` writes the new ``trial_N/trial.json`` before ``oracle.json``; a search
    killed between the two reloads trial N with no trace of it in the oracle's state (never
    started, in no bracket). The oracle numbers trials by how many it holds and stops at
    ``max_trials``, so that orphan would take a trial number and a place in ``--trials``
    without ever running: the resumed search would end one trial short. Forgotten, the same
    trial is drawn again (the random state was saved with the oracle, before it).
    """
    recorded = set(oracle.start_order)
    for trial_id in [t for t in oracle.trials if t not in recorded]:
        del oracle.trials[trial_id]
        orphan = Path(oracle._project_dir) / f"trial_{trial_id}" / "trial.json"
        orphan.unlink(missing_ok=True)


def retries_pending(oracle: Any) -> int:
    return len(getattr(oracle, "_retry_queue", []))


def num_brackets(oracle: Any) -> int:
    return int(oracle._get_num_brackets())


def num_rounds(oracle: Any, bracket: int) -> int:
    return int(oracle._get_num_rounds(bracket))


def round_size(oracle: Any, bracket: int, round: int) -> int:
    """Trials in round ``round`` of bracket ``bracket``."""
    return int(oracle._get_size(bracket, round))


def round_epochs(oracle: Any, bracket: int, round: int) -> int:
    """The cumulative epoch a trial of that round trains to (``round`` -1: 0)."""
    return int(oracle._get_epochs(bracket, round)) if round >= 0 else 0


def open_brackets(oracle: Any) -> list[tuple[int, list[list[dict[str, Any]]]]]:
    """The brackets in progress: (bracket number, rounds), each round a list of
    ``{"id": trial_id, "past_id": parent_id}``."""
    return [(int(b["bracket_num"]), b["rounds"]) for b in getattr(oracle, "_brackets", [])]


def oracle_client(oracle: Any, address: str, tuner_id: str) -> Any:
    """Keras Tuner's gRPC client of a chief's oracle (configured by its KERASTUNER_* vars)."""
    from keras_tuner.src.distribute.oracle_client import OracleClient

    host, _, port = address.rpartition(":")
    os.environ.update(
        {
            "KERASTUNER_ORACLE_IP": host,
            "KERASTUNER_ORACLE_PORT": port,
            "KERASTUNER_TUNER_ID": tuner_id,
        }
    )
    return OracleClient(oracle)


def serve_oracle(oracle: Any, address: str) -> Any:
    """Serve ``oracle`` to workers with Keras Tuner's own gRPC servicer, in this process."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(OracleServicer(oracle), server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} for Keras Tuner workers (port in use?).")
    server.start()
    return server


def check() -> None:
    """Fail loudly if the installed Keras Tuner lacks a private name used here."""
    import keras_tuner as kt

    version = getattr(kt, "__version__", "?")
    oracle = kt.oracles.HyperbandOracle(
        objective=kt.Objective("val_accuracy", "max"), max_epochs=9, factor=3
    )
    probes = {
        "Oracle._display.verbose": lambda: oracle._display.verbose,
        "keras_tuner.src.utils.save_json": lambda: (
            __import__("keras_tuner.src.utils", fromlist=["save_json"]).save_json
        ),
        "Oracle._set_project_dir": lambda: oracle._set_project_dir,
        "Oracle._project_dir": lambda: type(oracle)._project_dir,
        "Oracle.start_order": lambda: oracle.start_order,
        "HyperbandOracle._get_num_brackets": lambda: num_brackets(oracle),
        "HyperbandOracle._get_num_rounds": lambda: num_rounds(oracle, 0),
        "HyperbandOracle._get_size": lambda: round_size(oracle, 0, 0),
        "HyperbandOracle._get_epochs": lambda: round_epochs(oracle, 0, 0),
        "HyperbandOracle._brackets": lambda: oracle._brackets,
        "keras_tuner.src.distribute.oracle_client.OracleClient": lambda: (
            __import__(
                "keras_tuner.src.distribute.oracle_client", fromlist=["OracleClient"]
            ).OracleClient
        ),
        "keras_tuner.src.distribute.oracle_chief.OracleServicer": lambda: (
            __import__(
                "keras_tuner.src.distribute.oracle_chief", fromlist=["OracleServicer"]
            ).OracleServicer
        ),
        "keras_tuner.src.protos.get_service_grpc": lambda: (
            __import__("keras_tuner.src.protos", fromlist=["get_service_grpc"]).get_service_grpc
        ),
    }
    missing = []
    for name, probe in probes.items():
        try:
            probe()
        except (AttributeError, ImportError, TypeError) as exc:
            missing.append(f"{name} ({type(exc).__name__})")
    if missing:
        raise RuntimeError(
            f"Keras Tuner {version} changed private API that alexnet-tuner uses "
            f"(search/engines/kt_adapter.py, written for {TESTED}.x): {', '.join(missing)}. "
            f"Install keras-tuner=={TESTED}.* or update the adapter."
        )
