"""experiments/gpu_check.py in its CPU form: every section runs and is written down, so the
script a GPU gets is not run for the first time there."""

import json
import os
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_cpu_form_runs_every_section_and_writes_json_and_markdown(tmp_path):
    out = tmp_path / "check"
    run = subprocess.run([sys.executable, "-m", "experiments.gpu_check", f"--out={out}",
                          "--tiny", "--commit=abc1234"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["errors"] == {} and report["form"] == "tiny"
    env = report["environment"]
    assert env["commit"] == "abc1234" and env["versions"]["jax"] == jax.__version__
    assert env["versions"]["flax"] and env["versions"]["orbax-checkpoint"]
    assert report["devices"] == {"backend": "cpu", "count": 1, "kind": "cpu",
                                 "bytes_limit": None}
    main = report["main_job"]
    assert main["wall_s"] > 0 and 0 <= main["auroc"] <= 1 and "1 of 1 member(s)" in main["plan"]
    # The ensemble's members were vmapped and planned against 2 GB of device memory.
    rows = report["training"]
    assert [(row["members"], row["dtype"]) for row in rows] == [(2, "bfloat16")]
    for row in rows:
        assert row["images_per_s"] > 0 and row["estimate_bytes"] > 0
        assert row["plan"].startswith("2 of 2 member(s) per program (vmap)")
        assert "of 2.00 GB device memory" in row["plan"]
    assert report["scoring"]["images"] == 64 and report["scoring"]["images_per_s"] > 0
    markdown = (out / "gpu_check.md").read_text()
    assert "commit abc1234" in markdown and "| 2 | bfloat16 |" in markdown
    assert markdown in run.stdout  # printed too
    assert not (out / "scratch").exists()  # its workdir and dataset are removed
