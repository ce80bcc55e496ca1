"""A grid of runs packed into ensemble jobs, their launch commands, cost, and gathered tables.

    python -m experiments.sweep --dry_run                      # the paper's Table 1 grid
    python -m experiments.sweep --dry_run --target=tpu --accelerator=v4-32
    python -m experiments.sweep --target=slurm --accelerator=8xA100 --out=sweeps/paper
    python -m experiments.sweep --target=local --out=sweeps/paper   # runs the jobs here
    python -m experiments.sweep --gather --out=sweeps/paper    # Table 1 / 2 of every job

The grid is datasets x methods x latent sizes x seeds x entropy weights. Each
(dataset, method) pair is one job: its latent sizes, seeds and entropy weights
are the members of one ensemble, trained together in one program whose mesh
(ae4ad_jax/parallel/mesh.py) spreads the members, then the batch, over every chip of
the target. Without --dry_run, the script writes OUT/launch_<target>.sh (and
runs it for --target=local). The cost estimate is computed from XLA's FLOP
count of the train step and of scoring, the datasets' sizes and epochs, and
the stated peak rate of each accelerator; it is an estimate, labelled so.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import dataclasses
import functools
import os
import shlex
import subprocess

from absl import app, flags

from ae4ad_jax.core import datasets
from ae4ad_jax.core.errors import REQUEUE_STATUS, UserError, exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.parallel import mesh


def _dataset_facts() -> dict:
    """{dataset: (training images, test images, epochs, channels)}: the release's seven
    from their specs (ae4ad_jax/core/datasets.py), phantom from configs/default.py."""
    from configs import default

    config = default.get_config()
    facts = {name: (spec.train_images, spec.test_images, spec.epochs, spec.channels)
             for name, spec in datasets.SPECS.items() if name in datasets.BENCHMARK}
    phantom = config.phantom
    facts["phantom"] = (phantom.num_train, phantom.num_test_normal + phantom.num_test_abnormal,
                        config.num_epochs, 1)
    return facts


DATASETS = _dataset_facts()
EVAL_EVERY = 25
# Accelerators: (chips, hosts, JAX devices, stated peak FLOP/s per device at the precision
# a float32 model computes in by default: bf16 passes on TPUs, TF32 tensor cores on GPUs).
ACCELERATORS = {
    "v4-8": (4, 1, 4, 275e12), "v4-32": (16, 4, 16, 275e12), "v4-128": (64, 16, 64, 275e12),
    "v5e-8": (8, 1, 8, 197e12), "v5p-8": (4, 1, 4, 459e12),
    "1xA100": (1, 1, 1, 156e12), "8xA100": (8, 1, 8, 156e12),
    "1xH100": (1, 1, 1, 495e12), "8xH100": (8, 1, 8, 495e12), "cpu": (1, 1, 1, 1e11)}
ASSUMED_UTILISATION = 0.10  # of peak, for small convolutions at batch 64 (an assumption)

FLAGS = flags.FLAGS
flags.DEFINE_list("datasets", list(DATASETS)[:7], "Datasets of the grid.")
flags.DEFINE_list("methods", ["ae"], "Methods of the grid.")
flags.DEFINE_list("latent_sizes", ["1", "2", "4", "8", "16", "32", "64", "128"], "d values.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
flags.DEFINE_list("entropy_weights", ["0"], "Entropy weights lambda (an ensemble axis).")
flags.DEFINE_enum("target", "all", ["all", "local", "tpu", "slurm"], "Where the jobs run.")
flags.DEFINE_string("accelerator", "", "A key of ACCELERATORS (default: v4-32 for tpu, "
                    "8xA100 for slurm, the local devices for local).")
flags.DEFINE_string("out", "sweeps/paper", "Sweep folder: job workdirs and launch scripts.")
flags.DEFINE_string("tpu_name", "my-tpu", "Cloud TPU VM name (target tpu).")
flags.DEFINE_string("zone", "us-central2-b", "Cloud TPU zone (target tpu).")
flags.DEFINE_string("repo_dir", "~/ae4ad-jax", "The repository on the remote machines.")
flags.DEFINE_bool("dry_run", False, "Print jobs, commands and cost; write and run nothing.")
flags.DEFINE_bool("gather", False, "Write every job's Table 1 and the sweep's Table 2.")


@dataclasses.dataclass(frozen=True)
class Job:
    dataset: str
    method: str
    latent_sizes: tuple
    seeds: tuple
    entropy_weights: tuple

    @property
    def name(self):
        return f"{self.dataset}_{self.method}"

    @property
    def members(self):
        return max(len(self.latent_sizes), 1) * len(self.seeds) * len(self.entropy_weights)


def make_jobs(datasets, methods, latent_sizes, seeds, entropy_weights) -> list[Job]:
    from ae4ad_jax.methods import registry

    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise UserError(f"Unknown datasets {unknown}: known are {', '.join(DATASETS)}.")
    unknown = [m for m in methods if m not in registry.NAMES]
    if unknown:
        raise UserError(f"Unknown methods {unknown}: known are {', '.join(registry.NAMES)}.")
    # A method without a latent code (the DAE) runs over seeds only.
    has_latent = {m: registry.get(m).has_latent for m in methods}
    return [Job(d, m, tuple(latent_sizes) if has_latent[m] else (), tuple(seeds),
                tuple(entropy_weights) if has_latent[m] else ("0",))
            for d in datasets for m in methods]


def job_arguments(job: Job, workdir: str) -> list[str]:
    arguments = [f"--config=configs/{job.dataset}.py", f"--workdir={workdir}",
                 f"--config.method={job.method}",
                 f"--config.seeds=({','.join(map(str, job.seeds))},)"]
    if job.latent_sizes:
        arguments.insert(3, f"--config.latent_sizes=({','.join(map(str, job.latent_sizes))},)")
    if any(float(w) for w in job.entropy_weights):
        arguments.append(f"--config.entropy_weights=({','.join(job.entropy_weights)},)")
    return arguments


def launch_script(jobs, target, accelerator, out) -> str:
    """A bash script that runs every job on the target."""
    lines = ["#!/bin/bash", f"# {len(jobs)} jobs on {target} ({accelerator}), written by "
             "experiments/sweep.py", "set -euo pipefail"]
    commands = [shlex.join(["python", "-m", "ae4ad_jax.main",
                            *job_arguments(job, os.path.join(out, job.name))]) for job in jobs]
    if target == "local":  # a line before each job says which one of how many runs
        steps = [line for i, (job, command) in enumerate(zip(jobs, commands, strict=True))
                 for line in (f'echo "== job {i + 1} of {len(jobs)}: {job.name} ($(date +%T))"',
                              command)]
        return "\n".join(lines + [f"cd {shlex.quote(os.getcwd())}"] + steps) + "\n"
    if target == "tpu":  # every worker runs the same program; jax.distributed joins them
        remote = [f"cd {FLAGS.repo_dir} && {command} --config.distributed.initialize=yes"
                  for command in commands]
        return "\n".join(lines + [shlex.join([
            "gcloud", "compute", "tpus", "tpu-vm", "ssh", FLAGS.tpu_name, f"--zone={FLAGS.zone}",
            "--worker=all", f"--command={command}"]) for command in remote]) + "\n"
    return slurm_script(lines, commands, ACCELERATORS[accelerator][0], len(jobs))


# SLURM's notice before the end of a job's time or a preemption: SIGTERM this long before.
SLURM_SIGNAL_S = 120


def slurm_script(lines, commands, chips, num_jobs) -> str:
    """An array job, one task per job. SLURM sends SIGTERM (`--signal`) before it ends or
    preempts a task; the script passes it to the run, which saves at a step boundary and
    exits with REQUEUE_STATUS, and the script requeues the task. A requeued task resumes
    from the checkpoint; it may land on another node, so it takes over the lock its
    earlier run left (SLURM requeues a task only once it has ended)."""
    lines = lines[:1] + [
        f"#SBATCH --array=0-{num_jobs - 1}", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gres=gpu:{chips}", "#SBATCH --job-name=ae4ad-sweep", "#SBATCH --requeue",
        f"#SBATCH --signal=B:TERM@{SLURM_SIGNAL_S}", "#SBATCH --open-mode=append"] + lines[1:]
    lines = [line.replace("set -euo pipefail", "set -uo pipefail") for line in lines]
    lines += [f"cd {FLAGS.repo_dir}", "JOBS=("] + [f"  {shlex.quote(c)}" for c in commands]
    lines += [
        ")",
        'EXTRA=""',
        'if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then EXTRA=" --take_over_lock"; fi',
        'RUN=""; STOPPING=0',
        """trap 'STOPPING=1; if [ -n "$RUN" ]; then kill -TERM $RUN; fi' TERM""",
        'bash -c "exec ${JOBS[$SLURM_ARRAY_TASK_ID]}${EXTRA}" &',
        "RUN=$!",
        "if [ $STOPPING -eq 1 ]; then kill -TERM $RUN; fi  # signalled before the start",
        "STATUS=0; wait $RUN || STATUS=$?",
        "if [ $STOPPING -eq 1 ]; then  # the trap cut the wait short: wait for the run",
        "  wait $RUN; AGAIN=$?; if [ $AGAIN -ne 127 ]; then STATUS=$AGAIN; fi",
        "fi",
        f"if [ $STATUS -eq {REQUEUE_STATUS} ]; then",
        '  echo "ae4ad: requeueing task ${SLURM_ARRAY_TASK_ID} to resume from its checkpoint"',
        '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
        "fi",
        "exit $STATUS"]
    return "\n".join(lines) + "\n"


@functools.cache
def step_flops(channels: int, latent_size: int, image_size: int = 64, batch: int = 64):
    """XLA's FLOP count of one member's train step and of scoring one batch (forward)."""
    import jax
    import jax.numpy as jnp

    from ae4ad_jax.methods import registry
    from ae4ad_jax.training.state import create_train_state
    from ae4ad_jax.training.step import train_step
    from configs import default

    config = default.get_config()
    config.channels, config.image_size, config.latent_size = channels, image_size, latent_size
    config.execution.kernels = "xla"
    method = registry.create(config)
    state = jax.eval_shape(lambda: create_train_state(  # shapes only: nothing runs
        config, method, [{"latent_size": latent_size, "seed": 0}]))
    one = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state)
    images = jax.ShapeDtypeStruct((batch, image_size, image_size, channels), jnp.float32)
    step = jax.jit(functools.partial(train_step, method=method))
    train_cost = step.lower(one, images, jax.ShapeDtypeStruct((batch,), jnp.float32),
                            jax.ShapeDtypeStruct((batch,), jnp.int32), one.rng).cost_analysis()
    forward = jax.jit(lambda v, x: one.apply_fn(v, x, train=False,
                                                row_keys=jnp.zeros((batch, 2), jnp.uint32)))
    variables = {"params": one.params, "batch_stats": one.batch_stats}
    score_cost = forward.lower(variables, images).cost_analysis()
    return float(train_cost["flops"]), float(score_cost["flops"])


def job_flops(job: Job, batch: int = 64) -> float:
    train_images, test_images, epochs, channels = DATASETS[job.dataset]
    steps = -(-train_images // batch) * epochs
    evaluations = 1 + epochs // EVAL_EVERY
    scored = (train_images + test_images) / batch * evaluations
    total = 0.0
    for d in job.latent_sizes or (16,):
        train_step, score_batch = step_flops(channels, int(d))
        total += (steps * train_step + scored * score_batch) * len(job.seeds) * len(
            job.entropy_weights)
    return total


def print_plan(jobs, target, accelerator):
    chips, hosts, devices, peak = ACCELERATORS[accelerator]
    print(f"== {target}: {accelerator} ({chips} chips, {hosts} host(s), {devices} JAX "
          f"devices, stated peak {peak / 1e12:g} TFLOP/s per device)")
    total_flops, total_hours = 0.0, 0.0
    for job in jobs:
        shape = mesh.choose_mesh_shape(job.members, devices, 64)
        flops = job_flops(job)
        hours = flops / (devices * peak * ASSUMED_UTILISATION) / 3600
        total_flops, total_hours = total_flops + flops, total_hours + hours
        print(f"  {job.name:14s} {job.members:3d} members  mesh (member, data) = {shape}  "
              f"{flops / 1e15:8.2f} PFLOP  ~{hours * 60:8.2f} min")
    print(f"  total: {len(jobs)} jobs, {total_flops / 1e15:.1f} PFLOP (XLA's count of the "
          "AE's train steps and scoring, for every method)")
    at_peak = total_flops / (devices * peak) / 3600
    print(f"  ESTIMATE: {at_peak:.3g} h = {at_peak * chips:.3g} chip-hours at 100% of peak (a "
          f"lower bound); {total_hours:.3g} h = {total_hours * chips:.3g} chip-hours at an "
          f"assumed {ASSUMED_UTILISATION:.0%} of peak, jobs one after another. This AE's small "
          "layers may run further below peak: measure one epoch before booking.")


def gather(jobs, out):
    """Each job's report (Table 1), and OUT/table2.md: per dataset, every method at d = 16
    and AE[d_opt] from that dataset's `ae` job (reporting/tables.py's Table 2)."""
    from ae4ad_jax.core import files
    from ae4ad_jax.reporting import build, tables

    written = []
    for job in jobs:
        workdir = os.path.join(out, job.name)
        if not os.path.exists(os.path.join(workdir, "summary.json")):
            raise UserError(f"Job {job.name} has no results ({workdir}/summary.json); run it "
                            "first, or leave its dataset out with --datasets.")
        build.write_report([workdir])
        written.append(os.path.join(workdir, "report", "table1.md"))
    blocks = []
    for dataset in dict.fromkeys(job.dataset for job in jobs):
        methods = {job.method: os.path.join(out, job.name) for job in jobs
                   if job.dataset == dataset}
        ae = methods.get("ae", "")
        rows, note = tables.table2_rows(methods, 16, ae)
        blocks.append(tables.table2_markdown(dataset, 16, rows, note))
    path = os.path.join(out, "table2.md")
    files.write_text(path, "\n".join(blocks))
    print("\n".join(written + [path]))


def run():
    jobs = make_jobs(FLAGS.datasets, FLAGS.methods, FLAGS.latent_sizes, FLAGS.seeds,
                     FLAGS.entropy_weights)
    if FLAGS.gather:
        return gather(jobs, FLAGS.out)
    targets = ["tpu", "slurm", "local"] if FLAGS.target == "all" else [FLAGS.target]
    for target in targets:
        accelerator = FLAGS.accelerator or {"tpu": "v4-32", "slurm": "8xA100",
                                            "local": "cpu"}[target]
        if accelerator not in ACCELERATORS:
            raise UserError(f"Unknown --accelerator={accelerator}: known are "
                            f"{', '.join(ACCELERATORS)}.")
        print_plan(jobs, target, accelerator)
        script = launch_script(jobs, target, accelerator, FLAGS.out)
        if FLAGS.dry_run:
            print(script)
            continue
        os.makedirs(FLAGS.out, exist_ok=True)
        path = os.path.join(FLAGS.out, f"launch_{target}.sh")
        with open(path, "w") as f:
            f.write(script)
        print(f"wrote {path}" + ("; submit it with sbatch" if target == "slurm" else ""))
        if target == "local":
            subprocess.run(["bash", path], check=True)


def main(argv):
    del argv
    quiet_library_logs()
    exit_on_user_error(run)


if __name__ == "__main__":
    app.run(main)
