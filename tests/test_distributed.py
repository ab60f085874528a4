"""Several processes on one Optuna search: the embedded journal store and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from search.storage import StorageError, mask_url, resolve_storage
from tests.conftest import children_of
from tests.test_search import TINY_SPACE, search_args

pytestmark = pytest.mark.slow
PG_ENV = "ALEXNET_TUNER_TEST_PG"  # postgresql://user@host:port/db; the password in $PGPASSWORD
if os.environ.get("REQUIRE_POSTGRES") and not os.environ.get(PG_ENV):
    raise RuntimeError(f"REQUIRE_POSTGRES is set but {PG_ENV} is not")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.conftest import make_blog_layout

    root = tmp_path_factory.mktemp("tiny-dist")
    space = root / "space.toml"
    space.write_text(TINY_SPACE)
    return {
        "data": make_blog_layout(root / "data", train=8, test=4),
        "space": space,
        "cache": root / "cache",
    }


def test_mask_and_refuse_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        mask_url("postgresql://u:s3cret@db.example:5432/x")
        == "postgresql://u:***@db.example:5432/x"
    )
    assert mask_url("postgresql://u@db/x") == "postgresql://u@db/x"
    with pytest.raises(StorageError, match="must not contain a password") as err:
        resolve_storage("postgresql://u:s3cret@db/x")
    assert "s3cret" not in str(err.value)
    monkeypatch.setenv("ALEXNET_TUNER_STORAGE", "postgresql://u:s3cret@db/x")
    assert resolve_storage(None) == "postgresql://u:s3cret@db/x"


def _two_processes(args: list[str], run_dir: Path, env: dict[str, str]) -> list[str]:
    full_env = {**os.environ, **env}
    chief = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "config.json").exists():
        assert chief.poll() is None and time.monotonic() < deadline, "chief did not start"
        time.sleep(0.2)
    worker = subprocess.Popen(
        [*args, "--role", "worker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
    )
    outs = []
    for proc in (worker, chief):
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out
        outs.append(out)
    return outs


def _check(run_dir: Path, study: optuna.Study, n: int, processes: int = 2) -> None:
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    search = trials[trials["trial_id"] != "baseline"]
    assert len(search) == n and search["trial_id"].is_unique
    finished = [
        t for t in study.trials if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL
    ]
    assert sorted(f"{t.number:04d}" for t in finished) == sorted(search["trial_id"])
    assert len({t.user_attrs["pid"] for t in finished}) == processes  # each process trained
    assert json.loads((run_dir / "export.json").read_text())["equal"]
    assert (run_dir / "report.html").exists()


def test_two_processes_on_the_embedded_journal_extend_a_search(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run_dir = tmp_path / "run"
    optuna_search = ("--engine", "optuna", "--max-epochs", "2", "--no-baseline")
    first = search_args(tiny, run_dir, *optuna_search, "--trials", "2")
    done = subprocess.run(first, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # the same search given more trials, by a chief and a worker
    args = search_args(tiny, run_dir, *optuna_search, "--trials", "6")
    outs = _two_processes(args, run_dir, {})
    assert "worker done" in outs[0] and "extending the search: 2 done, 4 to run" in outs[1]
    storage = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    study = optuna.load_study(study_name="alexnet-tuner", storage=storage)
    _check(run_dir, study, 6, processes=3)  # the first run's process, then chief and worker


def test_a_worker_needs_a_chief(tiny: dict[str, Path], tmp_path: Path) -> None:
    args = search_args(tiny, tmp_path / "run", "--engine", "optuna", "--role", "worker")
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "start its chief" in out.stderr
    args = search_args(tiny, tmp_path / "run", "--engine", "random", "--role", "worker")
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "needs --oracle HOST:PORT" in out.stderr


@pytest.mark.skipif(
    not os.environ.get(PG_ENV),
    reason=f"no PostgreSQL server: set {PG_ENV}="
    "postgresql://USER@HOST:PORT/DB and PGPASSWORD (.ci/run starts one)",
)
def test_two_processes_on_postgresql_never_show_the_password(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    url = os.environ[PG_ENV]
    password = os.environ["PGPASSWORD"]
    study = f"test-{os.getpid()}-{int(time.time())}"
    run_dir = tmp_path / "run"
    args = search_args(
        tiny,
        run_dir,
        "--engine",
        "optuna",
        "--trials",
        "6",
        "--max-epochs",
        "2",
        "--storage",
        url,
        "--study",
        study,
    )
    outs = _two_processes(args, run_dir, {})
    _check(run_dir, optuna.load_study(study_name=study, storage=url), 6)
    for text in outs:
        assert password not in text
    for path in run_dir.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert password.encode() not in path.read_bytes(), path
    config = json.loads((run_dir / "config.json").read_text())
    assert config["identity"]["storage"] == mask_url(url)


def test_a_killed_workers_trial_is_retried(tiny: dict[str, Path], tmp_path: Path) -> None:
    import signal

    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    run_dir = tmp_path / "run"
    args = search_args(
        tiny, run_dir, "--engine", "optuna", "--trials", "5", "--max-epochs", "3", "--no-baseline"
    )
    chief = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while not (run_dir / "config.json").exists():
        assert chief.poll() is None
        time.sleep(0.2)
    worker = subprocess.Popen(
        [*args, "--role", "worker"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = JournalStorage(JournalFileBackend(str(run_dir / "optuna.journal")))
    deadline = time.monotonic() + 300
    while True:  # the chief creates the study just after config.json
        try:
            study = optuna.load_study(study_name="alexnet-tuner", storage=journal)
            break
        except KeyError:
            assert time.monotonic() < deadline and chief.poll() is None
            time.sleep(0.2)
    # The chief's trial process is paused until the worker has a trial running: on a fast
    # machine the chief would otherwise finish all five before the worker has started. The
    # chief then waits on its trial process, never inside a journal write.
    while not (held := children_of(chief.pid)):
        assert time.monotonic() < deadline and chief.poll() is None
        time.sleep(0.1)
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    victim = None
    while victim is None:
        assert time.monotonic() < deadline and chief.poll() is None
        victim = next(
            (
                t
                for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.RUNNING
                and t.user_attrs.get("pid") == worker.pid
            ),
            None,
        )
        time.sleep(0.2)
    os.kill(worker.pid, signal.SIGKILL)  # mid-trial
    worker.wait()
    for pid in held:
        os.kill(pid, signal.SIGCONT)
    out, _ = chief.communicate(timeout=600)
    assert chief.returncode == 0, out
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    assert len(trials) == 5 and trials["trial_id"].is_unique
    study = optuna.load_study(study_name="alexnet-tuner", storage=journal)
    assert study.trials[victim.number].state == optuna.trial.TrialState.FAIL
    retried = [t for t in study.trials if t.number != victim.number and t.params == victim.params]
    assert retried and retried[0].state != optuna.trial.TrialState.FAIL


def _launch(tiny: dict[str, Path], run_dir: Path, *extra: str) -> subprocess.Popen:
    args = search_args(tiny, run_dir, "--trials", "4", "--max-epochs", "3", *extra)
    return subprocess.Popen(
        [sys.executable, "-m", "search.launch", "--workers", "2", *args[3:]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def _check_keras_tuner_run(run_dir: Path, n: int) -> None:
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    search = trials[trials["trial_id"] != "baseline"]
    assert len(search) == n and search["trial_id"].is_unique
    assert (trials["trial_id"] == "baseline").sum() == 1
    assert json.loads((run_dir / "export.json").read_text())["equal"]
    assert (run_dir / "report.html").exists()
    assert len(list((run_dir / "logs").glob("worker-*.log"))) >= 2  # the workers trained


def test_keras_tuner_chief_and_two_workers(tiny: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _launch(tiny, run_dir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "serving Keras Tuner's oracle on 127.0.0.1:" in out
    _check_keras_tuner_run(run_dir, 4)


def test_keras_tuner_worker_killed_mid_trial(tiny: dict[str, Path], tmp_path: Path) -> None:
    import re
    import signal

    run_dir = tmp_path / "run"
    proc = _launch(tiny, run_dir)
    assert proc.stdout is not None
    pid = None
    lines = []
    while pid is None:
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
        m = re.match(r"launch: worker 0 pid (\d+)", line)
        pid = int(m.group(1)) if m else None
    deadline = time.monotonic() + 300
    while True:  # wait until worker 0's trial process is training
        assert time.monotonic() < deadline and proc.poll() is None
        log = run_dir / "logs" / f"worker-{pid}.log"
        if log.exists() and any((run_dir / "trials").glob("*/checkpoint.npz")):
            break
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, "".join(lines) + out
    assert "launch: worker 0 exited with -9; restarting it" in out
    _check_keras_tuner_run(run_dir, 4)


@pytest.mark.parametrize(
    ("workers", "gpus", "expected"),
    [
        (3, 4, {"chief": "0", "worker-0": "1", "worker-1": "2", "worker-2": "3"}),
        (1, 2, {"chief": "0", "worker-0": "1"}),
        (2, 2, {"chief": "0", "worker-0": "1", "worker-1": "0"}),  # more processes than GPUs
        (2, 0, {"chief": "", "worker-0": "", "worker-1": ""}),
    ],
)
def test_launch_gives_each_process_its_gpu(
    workers: int, gpus: int, expected: dict[str, str]
) -> None:
    from search.launch import assign_gpus

    assert assign_gpus(workers, gpus) == expected


def test_launch_counts_gpus_from_a_faked_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU list comes from ``nvidia-smi -L`` (no TensorFlow in the launcher): faked here
    with four GPUs, then hidden by ``CUDA_VISIBLE_DEVICES=""``."""
    from search.launch import assign_gpus, gpu_count

    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n" + "".join(f"echo 'GPU {i}: Fake GPU (UUID: GPU-{i})'\n" for i in range(4))
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu_count() == 4
    devices = assign_gpus(3, gpu_count())
    assert devices["chief"] == "0"
    assert sorted(devices.values()) == ["0", "1", "2", "3"]  # each its own
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_count() == 0
