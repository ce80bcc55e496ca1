"""A run killed at any point and started again ends with the same metrics as the same run
never interrupted (the session's finished run, trained in the test process): the main
command line's one subprocess of the suite."""

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _checkpointed_epochs(workdir):
    folder = os.path.join(workdir, "checkpoints")
    return [int(name) for name in os.listdir(folder) if name.isdigit()] if os.path.isdir(
        folder) else []


def test_kill_and_resume_gives_the_metrics_of_the_uninterrupted_run(finished_run, tmp_path):
    workdir = tmp_path / "killed"
    command = [sys.executable, "-m", "ae4ad_jax.main", "--config=configs/test.py",
               f"--workdir={workdir}", f"--config.tfds_dir={finished_run.config.tfds_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while max(_checkpointed_epochs(workdir), default=0) < 2 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(_checkpointed_epochs(workdir))
    assert 2 <= killed_at < 5, "the run was not killed in the middle"
    assert not (workdir / "summary.json").exists()

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"epoch {killed_at + 1}/5" in resumed.stdout  # it went on, not from the start
    assert "its process no longer runs" in resumed.stdout  # the killed run's lock, taken over
    assert not (workdir / "run.lock").exists()
    with open(workdir / "summary.json") as f:
        assert json.load(f)["metrics"] == finished_run.summary["metrics"]
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == [1, 5]  # no duplicated evaluations
