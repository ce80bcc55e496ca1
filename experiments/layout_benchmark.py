"""Training and scoring speed of the same single model under each device layout, in one run.

    python -m experiments.layout_benchmark            # one device: plain jit vs a 1x1 mesh
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.layout_benchmark

Layouts: "none" (plain jit, what one device runs), "mesh 1x1" (`jax.shard_map`
over a mesh of one device) and, when there are more devices, "mesh 1xN" and
"pmap 1xN" (the batch split over N devices). Rates are medians over --rounds
timed rounds after a compile round; the layouts take turns within each round in
alternating order, so a shared machine's slow spells fall on all of them. The
ratios to "none" are given with their spread over rounds (min / quartiles /
max). Forced host devices share the same cores: their rates show the cost of
the collectives, not a speed-up. Measurements: docs/performance.md.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import os
import time

import jax
import numpy as np
from absl import app, flags

from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.parallel import execution, mesh
from ae4ad_jax.training.state import create_train_state
from ae4ad_jax.training.step import train_epoch
from configs import default, test

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 10, "Training steps (batch 64) per timed round.")
flags.DEFINE_integer("eval_images", 1024, "Images scored per timed round (maps included).")
flags.DEFINE_integer("rounds", 6, "Timed rounds; medians are reported.")
flags.DEFINE_integer("size", 64, "Input size.")
flags.DEFINE_bool("tiny", False, "configs/test.py's narrow AE instead of the paper's: checks "
                  "that the script runs (the tests), measures nothing worth reporting.")
BATCH = 64


def _layouts():
    devices = jax.devices()
    layouts = {"none": mesh.single_device(),
               "mesh 1x1": mesh.Layout(jax.sharding.Mesh(
                   np.asarray(devices[:1]).reshape(1, 1), (mesh.MEMBER, mesh.DATA)),
                   "mesh")}
    if len(devices) > 1:
        row = jax.sharding.Mesh(np.asarray(devices).reshape(1, -1), (mesh.MEMBER, mesh.DATA))
        layouts[f"mesh 1x{len(devices)}"] = mesh.Layout(row, "mesh")
        layouts[f"pmap 1x{len(devices)}"] = mesh.Layout(row, "pmap")
    return layouts


def _runners(config, layout):
    """(train FLAGS.steps steps, score FLAGS.eval_images images) on `layout`."""
    method = registry.create(config)
    plan = execution.plan_execution(config)
    state = mesh.place(create_train_state(config, method, [
        {"latent_size": 16, "seed": 0}]), layout, mesh.MEMBERS)
    rng = np.random.default_rng(0)
    shape = (config.image_size, config.image_size, config.channels)
    rows = mesh.place_rows(rng.integers(0, 256, (BATCH * FLAGS.steps,) + shape, np.uint8),
                               layout)
    test = mesh.place_rows(rng.integers(0, 256, (FLAGS.eval_images,) + shape, np.uint8),
                               layout)
    box = {"state": state, "epoch": 0}

    def train_round():
        box["epoch"] += 1
        box["state"], metrics = train_epoch(box["state"], rows, box["epoch"], method=method,
                                            batch_size=BATCH, plan=plan, layout=layout)
        jax.block_until_ready(metrics)

    def score_round():
        scoring.score_members(scoring.scoring_weights(box["state"]), test,
                              batch_size=config.eval.batch_size, method=method, plan=plan,
                              layout=layout, with_maps=True)

    return train_round, score_round


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    config = (test if FLAGS.tiny else default).get_config()
    config.image_size, config.channels = FLAGS.size, 1
    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{len(jax.devices())} device(s), {os.cpu_count()} cores; {FLAGS.size}x{FLAGS.size}x1, "
          f"batch {BATCH}")
    runners = {name: _runners(config, layout) for name, layout in _layouts().items()}
    seconds = {(name, task): [] for name in runners for task in ("train", "score")}
    order = list(runners)
    for round_index in range(FLAGS.rounds + 1):
        order.reverse()
        for name in order:
            for task, run in zip(("train", "score"), runners[name], strict=True):
                start = time.perf_counter()
                run()
                if round_index:  # round 0 compiles
                    seconds[(name, task)].append(time.perf_counter() - start)
    images = {"train": BATCH * FLAGS.steps, "score": FLAGS.eval_images}
    print("| layout | train img/s | vs none (min / quartiles / max) | score img/s | vs none |")
    print("|---|---|---|---|---|")
    for name in runners:
        cells = []
        for task in ("train", "score"):
            rates = images[task] / np.asarray(seconds[(name, task)])
            base = images[task] / np.asarray(seconds[("none", task)])
            low, q1, q3, high = np.percentile(rates / base, [0, 25, 75, 100])
            cells += [f"{np.median(rates):.0f}",
                      f"{np.median(rates) / np.median(base):.2f}x ({low:.2f} / {q1:.2f}-"
                      f"{q3:.2f} / {high:.2f})"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    app.run(main)
