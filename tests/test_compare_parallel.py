"""`losskit compare` on every core and on Ray, as a user runs it (the command as a subprocess):
the same report whatever runs the fits; Ctrl-C and a killed worker stop everything and leave
nothing behind; workers spread over GPUs; the Ray backend without Ray installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from losskit.app.cli import main

FAST = ["--folds", "2", "--repeats", "2", "--max-repeats", "2", "--epochs", "4"]


def _losskit(*args: str, tmp: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp), "COLUMNS": "160"}
    return subprocess.Popen(
        [sys.executable, "-m", "losskit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own session: every process it starts can be found by the session id
        **kwargs,
    )


def _session(sid: int) -> list[int]:
    """The processes still alive in session ``sid`` (zombies aside)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _ours(tmp: Path) -> list[str]:
    """Temporary files of the run (torch keeps its own compile cache, torchinductor_*, there)."""
    return sorted(p.name for p in tmp.iterdir() if not p.name.startswith("torchinductor_"))


def _children_busy(tmp: Path, pid: int, timeout: float = 120) -> list[int]:
    """Wait until the command's worker processes are running fits (their marker files)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [m for d in tmp.glob("losskit-compare-*") for m in (d / "running").glob("*")]
        if running:
            return [int(m.name) for m in running]
        time.sleep(0.2)
    raise AssertionError("no worker started a fit")


def _nothing_left(tmp: Path, sid: int, out: Path) -> None:
    deadline = time.monotonic() + 15
    while _session(sid) and time.monotonic() < deadline:  # helpers exit when their pipe closes
        time.sleep(0.2)
    assert _session(sid) == [], "processes of the run are still alive"
    assert not out.exists()
    assert _ours(tmp) == [], "temporary files left behind"


def test_the_same_report_in_process_on_workers_and_on_ray(tmp_path):
    pytest.importorskip("ray")  # the ray extra; .ci/run installs it
    reports = {}
    for name, extra in [
        ("jobs1", ["--jobs", "1"]),
        ("default", []),
        ("jobs2", ["--jobs", "2"]),
        ("ray", ["--backend", "ray", "--jobs", "2"]),
    ]:
        # Ray's socket paths must stay under 107 bytes: a short temporary folder
        tmp = Path(tempfile.mkdtemp(prefix="lk-", dir="/tmp")) if name == "ray" else tmp_path / f"tmp-{name}"
        tmp.mkdir(exist_ok=True)
        out = tmp_path / name
        proc = _losskit("compare", "--dataset", "iris", *FAST, "--out", str(out), *extra, tmp=tmp)
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        reports[name] = (out / "metrics.json").read_bytes()
        assert _ours(tmp) == [], f"{name}: temporary files left behind"
        if name == "ray":
            shutil.rmtree(tmp)
        if name == "jobs2":
            assert "on 2 worker processes" in stdout
        if name == "ray":
            assert "on Ray (a local Ray instance)" in stdout
    assert reports["default"] == reports["jobs1"]
    assert reports["jobs2"] == reports["jobs1"]
    assert reports["ray"] == reports["jobs1"]


def test_a_bad_input_with_ray_stops_the_instance_started_beside_the_loading(tmp_path):
    """The command line starts a local Ray instance while it loads the data; a data file that
    does not exist is one line, exit 2, and the instance is gone with its session folder."""
    pytest.importorskip("ray")
    tmp = Path(tempfile.mkdtemp(prefix="lk-", dir="/tmp"))  # short: Ray's socket paths
    try:
        out = tmp_path / "report"
        proc = _losskit(
            "compare", str(tmp_path / "missing.csv"), "--target", "y", "--backend", "ray", "--out", str(out), tmp=tmp
        )
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 2, stderr
        assert stderr.strip().splitlines()[-1].startswith("losskit compare: data file ")
        _nothing_left(tmp, proc.pid, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_ctrl_c_stops_every_worker_exit_130_no_report(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "report"
    proc = _losskit("compare", "--folds", "3", "--repeats", "2", "--jobs", "2", "--out", str(out), tmp=tmp)
    _children_busy(tmp, proc.pid)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "losskit compare: interrupted; no report was written."
    _nothing_left(tmp, proc.pid, out)


def test_a_killed_worker_ends_the_run_naming_its_fit(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "report"
    proc = _losskit("compare", "--folds", "3", "--repeats", "2", "--jobs", "2", "--out", str(out), tmp=tmp)
    workers = _children_busy(tmp, proc.pid)
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("losskit compare: a worker process died while running the fit 'repeat ")
    assert "(exit code SIGKILL(-9): killed, out of memory or crashed); no report was written." in lines[0]
    _nothing_left(tmp, proc.pid, out)


def test_workers_are_spread_over_the_visible_gpus(tmp_path):
    # the placement logic without a GPU: each worker claims a slot and sees one device
    from loky import get_reusable_executor

    from losskit.app.compare.engines import gpu_slots
    from losskit.app.workers import worker_start

    assert gpu_slots(4, ["0", "1"]) == ["0", "1", "0", "1"]
    assert gpu_slots(3, ["2", "5", "7"]) == ["2", "5", "7"]
    assert gpu_slots(2, []) == []
    claims = tmp_path / "claims"
    claims.mkdir()
    executor = get_reusable_executor(max_workers=2, initializer=worker_start, initargs=(["3", "5"], str(claims)))
    try:
        seen = set()
        deadline = time.monotonic() + 120
        while len(seen) < 2 and time.monotonic() < deadline:
            seen |= set(executor.map(_visible_device, range(8)))
        assert {device for _, device in seen} == {"3", "5"}
        assert len({pid for pid, _ in seen}) == 2
    finally:
        executor.shutdown(wait=True, kill_workers=True)


def _visible_device(_: int) -> tuple[int, str]:
    time.sleep(0.05)
    return os.getpid(), os.environ["CUDA_VISIBLE_DEVICES"]


def test_ray_backend_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    out = tmp_path / "report"
    assert main(["compare", "--dataset", "iris", *FAST, "--backend", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--backend ray: the package 'ray' is not installed" in err and "pip install 'losskit[ray]'" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--gpus-per-fit", "1"], "--gpus-per-fit 1 needs --backend ray"),
        (["--ray-address", "ray://nowhere:1"], "--ray-address 'ray://nowhere:1' is given with --backend local"),
    ],
)
def test_bad_execution_options_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["compare", "--dataset", "iris", *FAST, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("args", [["--jobs", "0"], ["--jobs", "x"], ["--gpus-per-fit", "-1"]])
def test_bad_numbers_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--dataset", "iris", *args])
    assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("busy", "own", "free"),
    [
        ([3.0, 4.0], 0.0, 2),
        ([97.0, 2.0], 0.0, 1),
        ([99.0, 98.0], 0.0, 1),
        ([10.0, 60.0, 5.0, 55.0], 0.0, 2),
        ([100.0, 3.0], 100.0, 2),  # this process's main thread, encoding the data while a thread looks
        ([100.0, 99.0], 100.0, 1),  # ... and another program on the other core
        ([60.0, 55.0], 100.0, 2),  # this process moved between the cores
    ],
)
def test_the_default_jobs_leave_busy_cores_to_their_programs(monkeypatch, busy, own, free):
    import psutil

    from losskit.app.workers import free_cores

    class Own:
        def cpu_percent(self, interval=None):
            return own

    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, percpu=False: list(busy))
    monkeypatch.setattr(psutil, "Process", Own)
    assert free_cores(len(busy)) == free


def test_with_a_busy_core_the_default_runs_in_this_process(monkeypatch):
    # a comparison big enough for workers on an idle machine runs in this process when the
    # other core is taken (one worker would only add its start-up); --jobs 2 still starts two
    import numpy as np
    import psutil

    from losskit.app.compare import compare

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 20)), rng.integers(0, 2, 600)
    kwargs = dict(folds=2, repeats=1, max_repeats=1, epochs=40, baselines=False)
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, percpu=False: [5.0, 5.0])
    monkeypatch.setattr(psutil.Process, "cpu_percent", lambda self, interval=None: 0.0)
    monkeypatch.setattr("losskit.app.compare.stages.IN_PROCESS_WORK", 1e6)
    assert compare(x, y, **kwargs).run.execution["workers"] == 2
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval=None, percpu=False: [5.0, 99.0])
    assert compare(x, y, **kwargs).run.execution["engine"] == "in-process"
    assert compare(x, y, jobs=2, **kwargs).run.execution["workers"] == 2


def test_ray_workers_warm_up_while_the_data_still_loads(monkeypatch):
    """The command line's local Ray instance: once started, and while the data still loads,
    its workers are sent the imports of a first fit; with the data already loaded, not."""
    import time

    pytest.importorskip("ray")
    from losskit.app import ray_local

    warmed = []
    monkeypatch.setattr(ray_local, "start", lambda cpus: time.sleep(0.05))
    monkeypatch.setattr(ray_local, "warm_up", lambda cpus, baselines: warmed.append((cpus, baselines)))

    def slow() -> str:
        time.sleep(0.5)
        return "data"

    assert ray_local.start_beside(slow, 2, baselines=True) == "data"
    assert warmed == [(2, True)]
    warmed.clear()
    monkeypatch.setattr(ray_local, "start", lambda cpus: time.sleep(0.5))
    assert ray_local.start_beside(lambda: "data", 2) == "data"
    assert warmed == []


def test_the_ray_example_runs(tmp_path):
    """examples/compare_on_ray.py as a user runs it: a local Ray instance, started and stopped."""
    pytest.importorskip("ray")
    root = Path(__file__).resolve().parents[1]
    work = Path(tempfile.mkdtemp(prefix="lk-", dir="/tmp"))  # Ray's socket paths: a short folder
    try:
        proc = subprocess.run(
            [sys.executable, str(root / "examples" / "compare_on_ray.py"), "--quick", "--out", str(tmp_path / "r")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=work,
            env={**os.environ, "TMPDIR": str(work)},
        )
        assert proc.returncode == 0, proc.stderr
        assert "fits ran on Ray (a local Ray instance)" in proc.stdout
        assert (tmp_path / "r" / "metrics.json").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
