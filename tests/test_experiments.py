"""experiments/sweep.py: jobs, launch scripts, the cost estimate, and gathered tables."""

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _sweep(*arguments, check=True):
    return subprocess.run([sys.executable, "-m", "experiments.sweep", *arguments], cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=300, check=check)


def test_dry_run_packs_the_grid_into_jobs_with_commands_and_cost(tmp_path):
    out = _sweep("--dry_run", "--datasets=brats,c16", "--latent_sizes=1,16", "--seeds=0,1",
                 f"--out={tmp_path}").stdout
    assert not os.listdir(tmp_path)  # a dry run writes nothing
    # Two jobs (one per dataset) of 2 x 2 members, on each target.
    assert out.count("brats_ae         4 members") == 3
    assert "== tpu: v4-32 (16 chips, 4 host(s), 16 JAX devices" in out
    assert "mesh (member, data) = (4, 4)" in out  # 4 members over 16 devices
    assert out.count("--worker=all") == 2 and "--config.distributed.initialize=yes" in out
    assert "#SBATCH --array=0-1" in out and "#SBATCH --gres=gpu:8" in out
    assert "--config=configs/c16.py" in out and "'--config.latent_sizes=(1,16,)'" in out
    assert "ESTIMATE:" in out and "chip-hours" in out
    pflops = [float(line.split("PFLOP")[0].split()[-1]) for line in out.splitlines()
              if line.startswith("  c16_ae")]
    assert len(set(pflops)) == 1 and pflops[0] > 0  # the same work on every target
    unknown = _sweep("--dry_run", "--datasets=brats,mnist", check=False)
    assert unknown.returncode == 2 and "mnist" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def _summary(workdir, aurocs):
    os.makedirs(workdir)
    rows = [{"member": i, "latent_size": d, "seed": s, "auroc": auroc, "ap": auroc - 0.1,
             "recon_error_train_normal": 0.1 / d}
            for i, ((d, s), auroc) in enumerate(aurocs.items())]
    json.dump({"metrics": rows, "config": {"method": "ae", "dataset": "x", "num_epochs": 1,
                                           "eval": {"false_positive_rate": 0.05}},
               "wall_time_s": 60.0, "manifest": {"source": {"commit": None, "dirty": None},
                                                 "devices": {"count": 1, "kind": "cpu"}}},
              open(os.path.join(workdir, "summary.json"), "w"))


def test_gather_writes_table1_per_job_and_the_table2_of_each_dataset(tmp_path):
    _summary(tmp_path / "brats_ae", {(4, 0): 0.70, (4, 1): 0.72, (16, 0): 0.80, (16, 1): 0.84})
    _summary(tmp_path / "rsna_ae", {(4, 0): 0.73, (4, 1): 0.73, (16, 0): 0.67, (16, 1): 0.67})
    _sweep("--gather", "--datasets=brats,rsna", "--latent_sizes=4,16", "--seeds=0,1",
           f"--out={tmp_path}")
    assert (tmp_path / "brats_ae" / "report" / "table1.md").exists()
    table = (tmp_path / "table2.md").read_text().splitlines()
    assert table[0] == "Dataset brats, d = 16."
    assert table[2] == "| method | seeds | AUROC | AP |"
    assert table[4] == "| ae | 2 | 82.0 ± 2.0 | 72.0 ± 2.0 |"
    assert table[5] == "| AE[d_opt] (d = 16) | 2 | 82.0 ± 2.0 | 72.0 ± 2.0 |"
    rsna = table.index("Dataset rsna, d = 16.")
    assert table[rsna + 4] == "| ae | 2 | 67.0 ± 0.0 | 57.0 ± 0.0 |"
    assert table[rsna + 5] == "| AE[d_opt] (d = 4) | 2 | 73.0 ± 0.0 | 63.0 ± 0.0 |"
    missing = _sweep("--gather", "--datasets=brats,vin", f"--out={tmp_path}", check=False)
    assert missing.returncode == 2 and "vin_ae" in missing.stderr


def test_the_slurm_script_passes_sigterm_on_and_requeues_on_the_requeue_status(tmp_path):
    """The script SLURM runs, with a stand-in job (it saves and exits 75 at SIGTERM, as the
    main command does) and a stand-in scontrol that records its arguments."""
    from experiments import sweep

    sweep.FLAGS(["sweep"])
    job = (f"{sys.executable} -c 'import signal, sys, time; signal.signal(signal.SIGTERM, "
           f"lambda *_: sys.exit({sweep.REQUEUE_STATUS})); open(\"started\", \"w\").close(); "
           "time.sleep(60)'")
    script = sweep.slurm_script(["#!/bin/bash", "set -euo pipefail"], [job], 8, 1)
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:TERM@" in script
    script = script.replace(f"cd {sweep.FLAGS.repo_dir}", f"cd {tmp_path}")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "scontrol").write_text(f'#!/bin/bash\necho "$@" > {tmp_path}/requeued\n')
    os.chmod(tmp_path / "bin" / "scontrol", 0o755)
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
           "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "0", "SLURM_RESTART_COUNT": "1"}
    (tmp_path / "job.sh").write_text(script)
    batch = subprocess.Popen(["bash", str(tmp_path / "job.sh")], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while not (tmp_path / "started").exists() and time.time() < deadline:
            time.sleep(0.05)
        batch.send_signal(signal.SIGTERM)  # what --signal=B:TERM does
        output = batch.communicate(timeout=30)[0]
    finally:
        batch.kill()
    assert batch.returncode == sweep.REQUEUE_STATUS, output
    assert (tmp_path / "requeued").read_text().split() == ["requeue", "7_0"]
