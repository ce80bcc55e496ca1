"""Speed of training and scoring, JAX against a PyTorch version of the same AE, in one run.

    python -m experiments.benchmark                  # CPU: the README's table
    python -m experiments.benchmark --members=1,8,24 --sizes=64,128 --channels=1,3

For each input size and channel count: JAX training images/s for ensembles of
M members (member-images/s; M = 1 is the single model; "vs seq" divides by M
sequential single runs: the single model's rate, timed in the same rounds),
JAX compile seconds, JAX scoring images/s (the whole test set in one call), and,
when PyTorch is installed (optional: `pip install torch==2.13.0`), the same network in PyTorch
with the reference's settings: training images/s (Adam, batch 64) and scoring
one image at a time (the reference's test loop) and in batches of 256. Peak
resident memory of the process is printed at the end. Synthetic data; the
default AE (d = 16 for single models; mixed d for ensembles).

Under each input's rows: the forward pass's floating-point operations per image
(XLA's cost analysis of the compiled scoring program), the rate they run at in JAX
scoring, and that rate as a share of this machine's float32 matrix-product rate
(a 2048 x 2048 product in JAX, measured at the start): how far scoring is from
what the hardware could give.

Rates are medians over --epochs timed rounds after a compile round. Within each
round every rate takes turns with what it is compared with (JAX with PyTorch, an
ensemble with the single model), in alternating order from round to round, so
that a shared machine's slow spells fall on both sides of a ratio. Under each
input's rows the ratios are also given round by round (min / quartiles / max), to
show how far one run's medians can be trusted.

"(before)" rows: the single model in a child process with XLA's own kernels
(`execution.kernels=xla`: zero-dilated resampling convolutions, plain BatchNorm
reductions and ReLU) and XLA:CPU's default convolution library (no
`cpu_kernels.apply_xla_cpu_flags`). The undonated CPU step and the evaluation batch
are in both rows. Measurements: docs/performance.md.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets import cpu_kernels, layers
from ae4ad_jax.parallel import execution, mesh
from ae4ad_jax.training import memory
from ae4ad_jax.training import state as train_state
from ae4ad_jax.training import step as train_step
from configs import default, test

FLAGS = flags.FLAGS
flags.DEFINE_list("members", ["1", "8", "24"], "Ensemble sizes M.")
flags.DEFINE_list("sizes", ["64"], "Input sizes.")
flags.DEFINE_list("channels", ["1"], "Channel counts.")
flags.DEFINE_integer("steps", 10, "Timed training steps (batch 64) per member.")
flags.DEFINE_integer("eval_images", 1024, "Images scored in the scoring measurement.")
flags.DEFINE_bool("torch", True, "Also measure PyTorch when it is installed.")
flags.DEFINE_string("torch_device", "auto", "PyTorch's device: cpu, cuda, or auto (cuda when "
                    "PyTorch sees a GPU).")
flags.DEFINE_bool("before", True, "Also measure the single model as it was before the speed "
                  "work (a child process; see the module docstring).")
flags.DEFINE_enum("kernels", "auto", ["auto", "xla", "cpu"], "execution.kernels (the child "
                  "sets xla).")
flags.DEFINE_bool("xla_cpu_flag", True, "Apply cpu_kernels.apply_xla_cpu_flags (the child "
                  "does not).")
flags.DEFINE_enum("compute_dtype", "float32", ["float32", "bfloat16"], "model.compute_dtype.")
flags.DEFINE_integer("epochs", 6, "Timed rounds; medians are reported.")
flags.DEFINE_bool("tiny", False, "configs/test.py's narrow AE instead of the paper's: checks "
                  "that the script runs (the tests), measures nothing worth reporting.")
LATENT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
BATCH = 64


def _config(size, channels):
    config = (test if FLAGS.tiny else default).get_config()
    config.image_size, config.channels = size, channels
    config.execution.kernels = FLAGS.kernels
    config.model.compute_dtype = FLAGS.compute_dtype
    return config


def _round_rates(runners, rounds=None):
    """{name: images/s in each of `rounds` (default FLAGS.epochs) rounds} in which the
    runners ({name: (run, images per run)}) take turns, in alternating order, after one
    untimed round. A run returns when its work is done (results on the host, or a
    device synchronised)."""
    for run, _ in runners.values():
        run()
    seconds = {name: [] for name in runners}
    order = list(runners)
    for _ in range(rounds or FLAGS.epochs):
        order.reverse()  # no runner always first (position in a round shows in timings)
        for name in order:
            run = runners[name][0]
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return {name: runners[name][1] / np.asarray(s) for name, s in seconds.items()}


def _medians(rounds):
    return {name: float(np.median(r)) for name, r in rounds.items()}


def _spread(ratios):
    """A ratio's spread over rounds: 'min / lower-upper quartile / max'."""
    low, q1, q3, high = np.percentile(ratios, [0, 25, 75, 100])
    return f"{low:.2f} / {q1:.2f}-{q3:.2f} / {high:.2f}"


def jax_trainer(config, num_members, steps=None):
    """(run one epoch of `steps` (default FLAGS.steps) steps per member, images per epoch,
    compile s, plan, the memory estimate the plan was made with (None without a device
    memory limit))."""
    steps = steps or FLAGS.steps
    method = registry.create(config)
    members = ([{"latent_size": 16, "seed": 0}] if num_members == 1 else
               [{"latent_size": LATENT_SIZES[i % 8], "seed": i // 8} for i in range(num_members)])
    state = train_state.create_train_state(config, method, members)
    shape = (BATCH * steps, config.image_size, config.image_size, config.channels)
    images = mesh.place_rows(np.random.default_rng(0).integers(0, 256, shape, np.uint8),
                                 mesh.single_device())
    plan = execution.plan_execution(config)
    needs = []
    plan = execution.fit_to_memory(plan, num_members, lambda: needs.append(memory.memory_need(
        state, config, method, plan, {"train": shape[0]}, with_maps=False)) or needs[-1])
    box = {"state": state, "epoch": 0}

    def run():
        box["epoch"] += 1
        box["state"], metrics = train_step.train_epoch(
            box["state"], images, box["epoch"], method=method, batch_size=BATCH, plan=plan)
        jax.block_until_ready(metrics)

    start = time.perf_counter()
    run()  # compiles
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    return (run, num_members * shape[0], first - (time.perf_counter() - start), plan,
            needs[0] if needs else None)


def jax_scorer(config, num_images=None):
    """(score `num_images` (default FLAGS.eval_images) images, maps included, in one call;
    images scored)."""
    method = registry.create(config)
    state = train_state.create_train_state(config, method, [{"latent_size": 16, "seed": 0}])
    plan = execution.plan_execution(config)
    shape = (num_images or FLAGS.eval_images, config.image_size, config.image_size,
             config.channels)
    images = mesh.place_rows(np.random.default_rng(1).integers(0, 256, shape, np.uint8),
                                 mesh.single_device())

    def run():
        scoring.score_members(scoring.scoring_weights(state), images,
                              batch_size=config.eval.batch_size, method=method, plan=plan,
                              with_maps=True)  # host arrays: the scores are complete

    return run, shape[0]


def matmul_gflops(n=2048, repeats=10):
    """float32 matrix-product rate of this device in JAX: the median of `repeats`."""
    a = jnp.asarray(np.random.default_rng(2).standard_normal((n, n)), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    jax.block_until_ready(product(a))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a))
        seconds.append(time.perf_counter() - start)
    return 2 * n ** 3 / float(np.median(seconds)) / 1e9


def forward_flops(config):
    """Floating-point operations of one image's scoring forward pass (XLA's count)."""
    method = registry.create(config)
    state = train_state.create_train_state(config, method, [{"latent_size": 16, "seed": 0}])
    variables = jax.tree_util.tree_map(
        lambda x: x[0], {"params": state.params, "batch_stats": state.batch_stats})
    batch = 64
    images = jnp.zeros((batch, config.image_size, config.image_size, config.channels))
    compiled = jax.jit(lambda v, x: state.apply_fn(v, x, train=False)).lower(
        variables, images).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis["flops"]) / batch


def torch_model(size, channels, latent=16):
    """The benchmark's AE in PyTorch (NCHW), default PyTorch initialisation."""
    import torch.nn as tnn

    def down(i, o):
        return [tnn.Conv2d(i, o, 4, 2, 1, bias=False), tnn.BatchNorm2d(o), tnn.ReLU()]

    def up(i, o, last=False):
        layers = [tnn.ConvTranspose2d(i, o, 4, 2, 1, bias=False)]
        return layers if last else layers + [tnn.BatchNorm2d(o), tnn.ReLU()]

    fm = size // layers.DOWNSAMPLE_FACTOR
    return tnn.Sequential(
        *down(channels, 16), *down(16, 32), *down(32, 64), *down(64, 64), tnn.Flatten(),
        tnn.Linear(64 * fm * fm, 1024), tnn.BatchNorm1d(1024), tnn.ReLU(),
        tnn.Linear(1024, latent), tnn.Linear(latent, 1024), tnn.BatchNorm1d(1024), tnn.ReLU(),
        tnn.Linear(1024, 64 * fm * fm), tnn.Unflatten(1, (64, fm, fm)),
        *up(64, 64), *up(64, 32), *up(32, 16), *up(16, channels, last=True))


def torch_runners(size, channels, steps=None, eval_images=None, device="cpu",
                  compiled=False):
    """PyTorch's {name: (run, images per run)}: a training epoch of `steps` (default
    FLAGS.steps), scoring one image at a time (the reference's test loop; 256 images)
    and in batches of 256, of `eval_images` (default FLAGS.eval_images). Data and model
    are on `device` ("cpu", "cuda") before any timing; a run returns when the device
    has finished its work (`torch.cuda.synchronize`), scores on the host. `compiled`:
    the model under `torch.compile` (its compilation happens in the untimed round)."""
    import torch

    steps, eval_images = steps or FLAGS.steps, eval_images or FLAGS.eval_images
    model = torch_model(size, channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    forward = torch.compile(model) if compiled else model
    generator = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.rand(BATCH, channels, size, size, generator=generator) * 2 - 1).to(device)
    test = (torch.rand(eval_images, channels, size, size, generator=generator) * 2 - 1).to(
        device)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def train_epoch():
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.mean((forward(x) - x) ** 2)
            loss.backward()
            optimizer.step()
        synchronize()

    def scorer(batch, count):
        def run():
            model.eval()
            with torch.no_grad():
                for i in range(0, count, batch):
                    part = test[i:i + batch]
                    torch.mean((forward(part) - part) ** 2, dim=(1, 2, 3)).cpu().numpy()
            synchronize()
        return run, count

    return {"train": (train_epoch, BATCH * steps),
            "score 1-by-1": scorer(1, min(256, eval_images)),
            "score x256": scorer(256, eval_images)}


def _before_row(size, channels, reference):
    """The single-model row of the state before the speed work, from a child process."""
    flags_before = os.environ.get("XLA_FLAGS", "").replace(cpu_kernels.XLA_CPU_FLAG, "").strip()
    env = dict(os.environ, XLA_FLAGS=flags_before)
    child = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", "--members=1", f"--sizes={size}",
         f"--channels={channels}", f"--steps={FLAGS.steps}", f"--epochs={FLAGS.epochs}",
         f"--eval_images={FLAGS.eval_images}", "--torch=false", "--before=false",
         "--kernels=xla", "--xla_cpu_flag=false", f"--compute_dtype={FLAGS.compute_dtype}",
         f"--tiny={FLAGS.tiny}"],
        env=env, capture_output=True, text=True, check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cells = [line for line in child.stdout.splitlines()
             if line.startswith(f"| {size}x{size}x{channels} |")][0].split("|")[1:-1]
    rate = float(cells[3])
    torch_cells = (f"{reference['train']:.0f} | {rate / reference['train']:.2f}x | - | -"
                   if reference else "- | - | - | -")
    return (f"| {size}x{size}x{channels} (before) | 1 | {cells[2].strip()} | {rate:.0f} | - |"
            f"{cells[5]}|{cells[6]}| {torch_cells} |")


def main(argv):
    del argv
    if FLAGS.xla_cpu_flag:
        cpu_kernels.apply_xla_cpu_flags()
    try:
        import torch

        has_torch = FLAGS.torch and not FLAGS.tiny  # PyTorch's side is the paper's AE
        torch_device = FLAGS.torch_device
        if torch_device == "auto":
            torch_device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_note = (f", torch {torch.__version__} on {torch_device} with "
                      f"{torch.get_num_threads()} threads")
    except ImportError:
        has_torch, torch_device, torch_note = False, "cpu", ", torch not installed"
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} cores{torch_note}; {FLAGS.compute_dtype}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    peak = matmul_gflops()
    print(f"float32 matrix product (2048 x 2048): {peak:.0f} GFLOP/s")
    print("| input | M | lowering/chunk | JAX train img/s | vs seq | compile s | JAX score img/s "
          "| torch train img/s | JAX/torch train | torch score 1-by-1 | torch score x256 |")
    print("|---" * 11 + "|")
    for size in map(int, FLAGS.sizes):
        for channels in map(int, FLAGS.channels):
            config = _config(size, channels)
            torch_side = torch_runners(size, channels, device=torch_device) if has_torch else {}
            score_rounds = _round_rates({"jax": jax_scorer(config),
                                         **{name: runner for name, runner in torch_side.items()
                                            if name != "train"}})
            score = _medians(score_rounds)
            spreads = []
            if has_torch:
                spreads.append("JAX score / one at a time "
                               + _spread(score_rounds["jax"] / score_rounds["score 1-by-1"]))
            single, reference = jax_trainer(config, 1), None
            for num_members in map(int, FLAGS.members):
                run, images, compile_s, plan, _ = (single if num_members == 1 else
                                                   jax_trainer(config, num_members))
                # Each rate is set beside what it is compared with, in the same rounds:
                # PyTorch for the single model, the single model for ensembles.
                runners = {"jax": (run, images)}
                if num_members > 1:
                    runners["single"] = single[:2]
                elif has_torch:
                    runners["train"] = torch_side["train"]
                rounds = _round_rates(runners)
                rates = _medians(rounds)
                rate = rates["jax"]
                other = "single" if num_members > 1 else "train" if has_torch else None
                if other:
                    label = f"M={num_members} vs seq" if num_members > 1 else "JAX/torch train"
                    spreads.append(f"{label} {_spread(rounds['jax'] / rounds[other])}")
                vs_sequential = rate / rates.get("single", rate)
                if num_members == 1 and has_torch:
                    reference = {**score, "train": rates["train"]}
                if num_members == 1 and FLAGS.before:
                    print(_before_row(size, channels, reference), flush=True)
                torch_cells = ["-"] * 4
                if reference and num_members == 1:
                    torch_cells = [f"{reference['train']:.0f}", f"{rate / reference['train']:.2f}x",
                                   f"{reference['score 1-by-1']:.0f}",
                                   f"{reference['score x256']:.0f}"]
                print(f"| {size}x{size}x{channels} | {num_members} | "
                      f"{plan.lowering}/{plan.chunk} | {rate:.0f} | {vs_sequential:.2f}x | "
                      f"{compile_s:.1f} | "
                      + (f"{score['jax']:.0f}" if num_members == 1 else "-") + " | "
                      + " | ".join(torch_cells) + " |", flush=True)
            flops = forward_flops(config)
            achieved = flops * score["jax"] / 1e9
            print(f"  {size}x{size}x{channels}: forward pass {flops / 1e6:.1f} MFLOP/image; "
                  f"JAX scoring at {achieved:.0f} GFLOP/s = {100 * achieved / peak:.0f}% of "
                  "the matrix-product rate", flush=True)
            if spreads:
                print(f"  {size}x{size}x{channels} ratios per round (min / quartiles / max): "
                      + "; ".join(spreads), flush=True)
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the process: {resident:.0f} MiB")


if __name__ == "__main__":
    app.run(main)
