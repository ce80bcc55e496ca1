"""A run killed at any point and started again ends with the same metrics."""

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(workdir, tfds_dir):
    return [sys.executable, "-m", "ae4ad_jax.main", "--config=configs/test.py",
            f"--workdir={workdir}", f"--config.tfds_dir={tfds_dir}", "--config.num_epochs=5",
            "--config.eval_every_epochs=2"]


def _run(workdir, tfds_dir):
    subprocess.run(_command(workdir, tfds_dir), cwd=ROOT, check=True, capture_output=True,
                   timeout=600)
    with open(os.path.join(workdir, "summary.json")) as f:
        return json.load(f)["metrics"]


def _checkpointed_epochs(workdir):
    folder = os.path.join(workdir, "checkpoints")
    return [int(name) for name in os.listdir(folder) if name.isdigit()] if os.path.isdir(
        folder) else []


def test_kill_and_resume_gives_the_same_metrics(tmp_path):
    tfds_dir = tmp_path / "tfds"
    uninterrupted = _run(tmp_path / "uninterrupted", tfds_dir)

    workdir = tmp_path / "killed"
    process = subprocess.Popen(_command(workdir, tfds_dir), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while max(_checkpointed_epochs(workdir), default=0) < 2 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = max(_checkpointed_epochs(workdir))
    assert 2 <= killed_at < 5, "the run was not killed in the middle"
    assert not (workdir / "summary.json").exists()

    resumed = _run(workdir, tfds_dir)
    assert resumed == uninterrupted
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert [row["epoch"] for row in rows] == [1, 2, 4, 5]  # no duplicated evaluations
