"""One run that gives the whole picture on an accelerator, and writes it down.

    python -m experiments.gpu_check --out=gpu_check          # on a GPU: under 6 minutes
    python -m experiments.gpu_check --out=/tmp/check --tiny  # the CPU form (the suite runs it)

Writes `gpu_check.json` and `gpu_check.md` (the tables for docs/performance.md and the
README) into --out, and prints the Markdown. In order:

1. the environment: date, commit, devices, driver, the versions of Python, JAX, jaxlib,
   Flax, Optax, Orbax, NumPy and PyTorch;
2. PyTorch (when installed), in a child process that has the device to itself before
   JAX takes its share: the same AE (`benchmark.torch_model`) trained (Adam, batch 64)
   and scored one image at a time (the reference's test loop) and in batches of 256,
   eager and under `torch.compile`, data and model on the device before timing,
   `torch.cuda.synchronize` before every clock reading; its peak device memory;
3. the main job (configs/default.py on the embedded dataset; the README's first command)
   in this process: wall time, metrics, the plan it chose, peak device memory;
4. JAX training images/s (member-images/s) for 1, 24 and 96 members, float32 and
   bfloat16, each with its plan, the memory estimate it was made with and the device's
   peak memory so far;
5. JAX scoring images/s (maps included, one call), beside PyTorch's.

A section that fails records its error (`errors` in the JSON) and the others still
run: the first run on a new device must tell everything at once. `--tiny` is the same
script at sizes a CPU runs in seconds (32x32, an ensemble of 2 in bfloat16, a one-epoch
main job on configs/test.py), its ensemble's members vmapped into one program and
planned against 2 GB of device memory (the planner's path on a GPU; the CPU's kernels
and host loop keep it to seconds), PyTorch eager only and only when installed.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

from absl import app, flags

from experiments import benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Folder for gpu_check.json and gpu_check.md (created).")
# --tiny (the CPU form: tiny sizes, PyTorch eager only if installed) is the flag that
# experiments/benchmark.py defines, which this script imports.
flags.DEFINE_bool("with_torch", True, "Measure PyTorch when it is installed.")
flags.DEFINE_string("commit", "", "The commit checked (default: git's, when readable).")
flags.DEFINE_enum("part", "all", ["all", "torch"], "Internal: the PyTorch child process.")

SIZES = {  # what each form measures
    False: {"image_size": 64, "members": (1, 24, 96), "dtypes": ("float32", "bfloat16"),
            "steps": 20, "eval_images": 4096, "rounds": 3, "torch_compile": True},
    True: {"image_size": 32, "members": (2,), "dtypes": ("bfloat16",), "steps": 2,
           "eval_images": 64, "rounds": 1, "torch_compile": False},
}
# Members vmapped (chunked by memory, as on a GPU) and a device memory to plan for (CPUs
# report none).
TINY_EXECUTION = {"member_lowering": "vmap", "memory_limit_bytes": 2 * 10**9}
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "torch")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _commit():
    if FLAGS.commit:
        return FLAGS.commit
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _gpus():
    """nvidia-smi's name, memory and driver of each GPU ([] without one)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [dict(zip(("name", "memory", "driver"), (cell.strip() for cell in line.split(",")),
                     strict=False)) for line in out.splitlines() if line.strip()]


def environment():
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": _commit(),
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "gpus": _gpus(),
            "versions": {package: _version(package) for package in PACKAGES}}


def devices():
    import jax

    from ae4ad_jax.parallel import execution

    found = jax.devices()
    return {"backend": jax.default_backend(), "count": len(found),
            "kind": found[0].device_kind, "bytes_limit": execution.device_memory()}


def _peak_memory():
    """The largest `peak_bytes_in_use` of the local devices so far (None on CPU)."""
    import jax

    peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use")
             for device in jax.local_devices()]
    peaks = [peak for peak in peaks if peak]
    return max(peaks) if peaks else None


def torch_measurements(sizes):
    """PyTorch's rates (this process: the child). Empty when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    found = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
             "cuda": torch.version.cuda, "forms": {}}
    for compiled in (False, True) if sizes["torch_compile"] else (False,):
        runners = benchmark.torch_runners(sizes["image_size"], 1, sizes["steps"],
                                          sizes["eval_images"], device=device,
                                          compiled=compiled)
        start = time.perf_counter()
        for run, _ in runners.values():
            run()  # compiles under torch.compile
        first = time.perf_counter() - start
        rates = benchmark._medians(benchmark._round_rates(runners, sizes["rounds"]))
        found["forms"]["compile" if compiled else "eager"] = {
            "first_round_s": round(first, 1),
            **{name: round(rate, 1) for name, rate in rates.items()}}
    if device == "cuda":
        found["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    return found


def _torch_child(tiny):
    """PyTorch's measurements from a child process (it exits before JAX takes memory)."""
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "PyTorch is not installed"}
    command = [sys.executable, "-m", "experiments.gpu_check", "--part=torch", "--out=-",
               f"--tiny={str(tiny).lower()}"]
    child = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=ROOT)
    if child.returncode:
        raise RuntimeError(f"the PyTorch child exited with {child.returncode}: "
                           f"{child.stderr[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _config(tiny, as_accelerator=True):
    """The default config; in the tiny form configs/test.py's narrow AE, planned as on an
    accelerator (TINY_EXECUTION) where `as_accelerator`."""
    from configs import default, test

    if not tiny:
        return default.get_config()
    config = test.get_config()
    if as_accelerator:
        config.execution.update(TINY_EXECUTION)
    return config


def main_job(tiny, workdir):
    from ae4ad_jax.parallel import execution
    from ae4ad_jax.training import loop

    config = _config(tiny, as_accelerator=False)  # the CPU's own plan: seconds, not a minute
    if tiny:
        config.num_epochs = config.eval_every_epochs = 1
    config.channels = 1  # phantom's
    config.tfds_dir = os.path.join(workdir, "tfds")
    start = time.perf_counter()
    summary = loop.train_and_evaluate(config, os.path.join(workdir, "run"))
    seconds = time.perf_counter() - start
    metrics = summary["metrics"][0]
    return {"config": "configs/test.py" if tiny else "configs/default.py",
            "wall_s": round(seconds, 1), "epochs": config.num_epochs,
            "auroc": metrics["auroc"], "ap": metrics["ap"],
            "plan": execution.describe(execution.plan_execution(config), 1),
            "peak_memory_bytes": _peak_memory()}


def training(sizes, tiny):
    from ae4ad_jax.parallel import execution

    rows = []
    for dtype in sizes["dtypes"]:
        for members in sizes["members"]:
            config = _config(tiny)
            config.image_size, config.channels = sizes["image_size"], 1
            config.model.compute_dtype = dtype
            run, images, compile_s, plan, need = benchmark.jax_trainer(
                config, members, sizes["steps"])
            rates = benchmark._medians(benchmark._round_rates({"jax": (run, images)},
                                                              sizes["rounds"]))
            limit = plan.memory_limit or execution.device_memory()
            rows.append({"members": members, "dtype": dtype,
                         "images_per_s": round(rates["jax"], 1),
                         "compile_s": round(compile_s, 1),
                         "plan": execution.describe(plan, members, need, limit),
                         "estimate_bytes": (need.total(members, plan.chunk, plan.donate)
                                            if need else None),
                         "peak_memory_bytes": _peak_memory()})
    return rows


def scoring(sizes, tiny):
    config = _config(tiny)
    config.image_size, config.channels = sizes["image_size"], 1
    run, images = benchmark.jax_scorer(config, sizes["eval_images"])
    rates = benchmark._medians(benchmark._round_rates({"jax": (run, images)}, sizes["rounds"]))
    return {"images": images, "images_per_s": round(rates["jax"], 1)}


def _mb(num_bytes):
    return "-" if num_bytes is None else f"{num_bytes / 2**20:.0f} MiB"


def markdown(report):
    env, lines = report["environment"], []
    gpus = ", ".join(f"{g.get('name')} ({g.get('memory')}, driver {g.get('driver')})"
                     for g in env["gpus"]) or "no GPU"
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items()
                         if version)
    lines += [f"{env['date']}, commit {env['commit']}: {gpus}; {versions}; "
              f"Python {env['python']}, {env['cpus']} CPUs.", ""]
    if "devices" in report:
        d = report["devices"]
        lines += [f"JAX devices: {d['count']} x {d['kind']} ({d['backend']}), bytes_limit "
                  f"{_mb(d['bytes_limit'])}.", ""]
    if "main_job" in report:
        m = report["main_job"]
        lines += [f"Main job ({m['config']}, {m['epochs']} epoch(s)): {m['wall_s']} s, AUROC "
                  f"{m['auroc']:.4f}, AP {m['ap']:.4f}; plan: {m['plan']}; peak device "
                  f"memory {_mb(m['peak_memory_bytes'])}.", ""]
    if "training" in report:
        lines += ["| members | dtype | JAX train img/s | compile s | plan | estimate | "
                  "peak so far |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['members']} | {r['dtype']} | {r['images_per_s']:.0f} | "
                  f"{r['compile_s']} | {r['plan']} | {_mb(r['estimate_bytes'])} | "
                  f"{_mb(r['peak_memory_bytes'])} |" for r in report["training"]]
        lines.append("")
    torch_forms = report.get("torch", {}).get("forms", {})
    if "scoring" in report or torch_forms:
        lines += ["| | train img/s | score img/s, batched | score img/s, one at a time | "
                  "first round s |", "|---|---|---|---|---|"]
        if "scoring" in report:
            one = next((f"{r['images_per_s']:.0f}" for r in report.get("training", [])
                        if r["members"] == 1 and r["dtype"] == "float32"), "-")
            lines.append(f"| JAX | {one} | "
                         f"{report['scoring']['images_per_s']:.0f} (one call) | - | - |")
        for form, rates in torch_forms.items():
            lines.append(f"| PyTorch {form} | {rates['train']:.0f} | {rates['score x256']:.0f} "
                         f"| {rates['score 1-by-1']:.0f} | {rates['first_round_s']} |")
        if report.get("torch", {}).get("peak_memory_bytes"):
            lines.append(f"\nPyTorch peak device memory: "
                         f"{_mb(report['torch']['peak_memory_bytes'])}.")
        lines.append("")
    for section, error in report["errors"].items():
        lines.append(f"**{section} failed**: `{error.strip().splitlines()[-1]}`")
    return "\n".join(lines).rstrip() + "\n"


def check(out, tiny=False, with_torch=True):
    """Runs every section; writes and returns the report."""
    sizes = SIZES[tiny]
    os.makedirs(out, exist_ok=True)
    report = {"form": "tiny" if tiny else "full", "sizes": sizes, "environment": environment(),
              "errors": {}}
    scratch = os.path.join(out, "scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    sections = [("torch", lambda: _torch_child(tiny)) if with_torch else None,
                ("devices", devices),  # JAX takes the device from here on
                ("main_job", lambda: main_job(tiny, scratch)),
                ("training", lambda: training(sizes, tiny)),
                ("scoring", lambda: scoring(sizes, tiny))]
    for name, section in filter(None, sections):
        start = time.perf_counter()
        try:
            report[name] = section()
        except Exception:  # recorded; the other sections still run
            report["errors"][name] = traceback.format_exc()
        print(f"[gpu_check] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr,
              flush=True)
    shutil.rmtree(scratch, ignore_errors=True)
    report["peak_device_memory_bytes"] = _peak_memory() if "devices" in report else None
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out, "gpu_check.md"), "w") as f:
        f.write(markdown(report))
    return report


def main(argv):
    del argv
    if FLAGS.part == "torch":
        print(json.dumps(torch_measurements(SIZES[FLAGS.tiny])))
        return
    if not FLAGS.out:
        raise app.UsageError("--out is required: the folder for gpu_check.json and .md")
    from ae4ad_jax.core.logs import quiet_library_logs
    from ae4ad_jax.nets import cpu_kernels

    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    report = check(FLAGS.out, FLAGS.tiny, FLAGS.with_torch)
    print(open(os.path.join(FLAGS.out, "gpu_check.md")).read())
    for section, error in report["errors"].items():
        print(f"--- {section} ---\n{error}", file=sys.stderr)
    sys.exit(1 if report["errors"] else 0)


if __name__ == "__main__":
    app.run(main)
