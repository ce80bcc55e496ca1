"""Time of each latent-entropy estimator on this machine's default JAX device.

    python -m experiments.entropy_benchmark [--num=20000] [--dims=16]

Each figure is the median of 3 timed calls after one compiling call.
"""

if not __package__:  # `python experiments/NAME.py` cannot import the package: say how
    raise SystemExit("Run it from the checkout as a module: python -m experiments."
                     + __file__.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py"))

import os
import time

import jax
import numpy as np
from absl import app, flags

from ae4ad_jax.estimators import entropy

FLAGS = flags.FLAGS
flags.DEFINE_integer("num", 20_000, "Number of latent vectors.")
flags.DEFINE_list("dims", ["16"], "Latent dimensions.")
RENYI_BATCH = 4096  # the Renyi estimator builds an N x N Gram matrix


def _time(fn):
    jax.block_until_ready(fn())
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def main(argv):
    del argv
    print(f"backend {jax.default_backend()}, {jax.devices()[0].device_kind}, "
          f"{os.cpu_count()} cores")
    print("| method | N | d | seconds |")
    print("|---|---|---|---|")
    for d in map(int, FLAGS.dims):
        z = np.random.default_rng(0).standard_normal((FLAGS.num, d)).astype(np.float32)
        for method in entropy.ESTIMATORS:
            sample = z[:RENYI_BATCH] if method == "renyi" else z
            seconds = _time(lambda m=method, s=sample: entropy.estimate_entropy(s, m))
            print(f"| {method} | {len(sample)} | {d} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
