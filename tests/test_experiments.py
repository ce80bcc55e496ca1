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


# ----------------------------------------------------------------------------- each script
# Every script under experiments/ in its smallest form: it runs its own code end to end
# (data written, programs compiled and timed, tables printed), at sizes that measure
# nothing. gpu_check has its own test (tests/test_gpu_check.py), sweep the tests above.


def _script(name, *arguments, timeout=300):
    """The script's stdout; it must exit 0."""
    run = subprocess.run([sys.executable, "-m", f"experiments.{name}", *arguments], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_a_script_started_as_a_file_says_how_to_run_it():
    for name in ("benchmark", "sweep", "gpu_check"):
        old = subprocess.run([sys.executable, f"experiments/{name}.py"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert old.returncode == 1 and "Traceback" not in old.stderr
        assert old.stderr.strip() == ("Run it from the checkout as a module: python -m "
                                      f"experiments.{name}")


def _table_rows(text, start):
    return [line for line in text.splitlines() if line.startswith(start)]


def test_benchmark_times_training_and_scoring_of_ensembles():
    out = _script("benchmark", "--tiny", "--members=1,2", "--sizes=16", "--steps=1",
                  "--eval_images=64", "--epochs=1", "--before=false")
    rows = _table_rows(out, "| 16x16x1")
    assert [row.split("|")[2].strip() for row in rows] == ["1", "2"]  # M = 1, 2
    assert float(rows[0].split("|")[4]) > 0  # JAX training images/s
    assert "peak resident memory" in out


def test_layout_benchmark_compares_plain_jit_and_a_mesh_of_one():
    out = _script("layout_benchmark", "--tiny", "--steps=1", "--eval_images=64",
                  "--rounds=1", "--size=16")
    assert _table_rows(out, "| none |") and _table_rows(out, "| mesh 1x1 |")


def test_first_step_benchmark_times_first_and_cached_runs():
    out = _script("first_step_benchmark", "--tiny", "--runs=1")
    assert "median seconds to the first step: first run" in out and "second run" in out


def test_entropy_benchmark_times_each_estimator():
    out = _script("entropy_benchmark", "--num=200", "--dims=2")
    assert {row.split("|")[1].strip() for row in _table_rows(out, "| ")} >= {
        "gaussian", "knn", "renyi"}


def test_memory_plans_prints_the_plan_of_each_device():
    out = _script("memory_plans", "--sizes=16")
    assert len(_table_rows(out, "| 16x16 |")) == 4  # three devices and the estimate


def test_data_benchmark_prepares_and_loads_a_folder(tmp_path):
    out = _script("data_benchmark", f"--root={tmp_path}", "--num_images=30",
                  "--source_size=32")
    assert "load (prepared)" in out and "for 30 images" in out


def test_detector_first_call_counts_compiles_and_imports(finished_run):
    line = json.loads(_script("detector_first_call", f"--workdir={finished_run.workdir}")
                      .strip().splitlines()[-1])
    assert line["programs_compiled"] >= 1
    assert line["imported"] == {"optax": False, "matplotlib": False,
                                "ae4ad_jax.training": False}


def test_score_benchmark_scores_pngs_and_a_volume(finished_run, tmp_path):
    result = json.loads(_script("score_benchmark", f"--workdir={finished_run.workdir}",
                                f"--root={tmp_path}", "--num_images=5")
                        .strip().splitlines()[-1])
    assert result["files"] == 6 and result["images"] == 5 + 155
    assert result["with_overlays"]["images_per_second"] > 0


def test_hostile_files_scores_the_corpus_under_a_memory_limit(finished_run, tmp_path):
    result = json.loads(_script("hostile_files", f"--workdir={finished_run.workdir}",
                                f"--root={tmp_path}", "--pydicom=false", "--volume_side=16"))
    corpus = result["corpus"]
    assert corpus["exit_status"] == 1 and corpus["files_scored"] > 0
    assert corpus["error_rows"] > 10 and corpus["peak_rss_mb"] > 0
    assert corpus["outcomes"]["zeros16.nii.gz"] == "scored: 16 slice(s)"


def test_onnx_check_compares_onnx_runtime_with_jax_and_times_both(finished_run):
    out = _script("onnx_check", f"--workdir={finished_run.workdir}", "--images=8",
                  f"--speed_workdir={finished_run.workdir}", "--rounds=1")
    [row] = _table_rows(out, "| ae |")
    assert "exported" in row and float(row.split("|")[3].split(" of ")[0]) < 1e-5
    assert "ONNX Runtime" in out and "images/s, JAX" in out
