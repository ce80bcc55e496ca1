"""Training throughput of ensembles against one-after-another single runs.

    python experiments/ensemble_benchmark.py [--members=1,8,24] [--lowerings=host,vmap]

For each ensemble size M and member lowering, trains the default AE (64x64x1,
batch 64, mixed latent sizes) for a warm-up epoch (compilation) and then a
timed epoch of --num_images synthetic images per member, and prints
member-images per second. "sequential" is M single-model runs one after
another, i.e. the M = 1 figure. The same script runs unchanged on a GPU
(where "auto" picks vmap and a lax.scan epoch).
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae4ad_jax import ensemble, methods, train  # noqa: E402
from configs import default  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("members", ["1", "8", "24"], "Ensemble sizes.")
flags.DEFINE_list("lowerings", ["auto", "vmap"], "Member lowerings to measure.")
flags.DEFINE_integer("num_images", 256, "Training images per member per timed epoch.")
LATENT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def measure(config, num_members, lowering):
    method = methods.METHODS["ae"]
    members = [{"latent_size": LATENT_SIZES[i % 8], "seed": i // 8} for i in range(num_members)]
    state = train.create_train_state(config, method, members)
    config.member_lowering = lowering
    plan = ensemble.plan_execution(config, num_members, lambda: 1)
    images = jnp.asarray(np.random.default_rng(0).integers(
        0, 256, (FLAGS.num_images, 64, 64, 1)), jnp.uint8)
    timings = []
    for epoch in (1, 2):
        start = time.perf_counter()
        state, metrics = train.train_epoch(state, images, epoch, method=method,
                                           batch_size=config.batch_size,
                                           lowering=plan.lowering, loop=plan.loop,
                                           chunk=plan.chunk)
        jax.block_until_ready(metrics)
        timings.append(time.perf_counter() - start)
    return plan, timings[0] - timings[1], num_members * FLAGS.num_images / timings[1]


def main(argv):
    del argv
    config = default.get_config()
    print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} cores")
    print("| M | lowering | epoch loop | compile s | member-images/s | vs sequential |")
    print("|---|---|---|---|---|---|")
    single = None
    for num_members in map(int, FLAGS.members):
        for lowering in FLAGS.lowerings:
            plan, compile_s, rate = measure(config, num_members, lowering)
            if num_members == 1 and single is None:
                single = rate
            ratio = f"{rate / single:.2f}x" if single else "-"
            print(f"| {num_members} | {plan.lowering} | {plan.loop} | {compile_s:.1f} | "
                  f"{rate:.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    app.run(main)
