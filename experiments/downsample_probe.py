"""Lowerings of the AE's first convolution (Conv 4x4, stride 2, padding 1, few input
channels -> 16) on XLA:CPU: its forward pass and its kernel gradient, each form timed.

    python experiments/downsample_probe.py [--cases=64x64x1,...] [--rounds=11]

A case is BATCHxSIZExCHANNELS (the layer's input). Forward forms:

  strided   XLA's strided convolution
  s2d       space-to-depth, then a 2x2 stride-1 convolution (cpu_kernels.downsample_by_s2d)
  taps      16 * C_in broadcast products of strided windows (cpu_kernels.downsample_by_taps)

Kernel-gradient forms (what training needs of the first layer; its input needs no
gradient): XLA's autodiff of the strided and of the space-to-depth forward.

Every form is checked against the strided one (relative error printed); timings are
medians of --rounds rounds in which the forms of a group take turns. With one or two
input channels a convolution library has a contraction of 16 or 32 products per
output to work with, and the single elementwise loop of `taps`, vectorised over the
16 output channels, wins; at three channels it ties with space-to-depth. The AE
uses `taps` only where the conv is not differentiated (scoring): inside the train
step XLA fuses the elementwise chain into its consumers and the step was slower.
"""

import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae4ad_jax.nets import cpu_kernels, kernels  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["64x64x1", "64x64x3", "64x128x1", "256x64x1", "256x128x1"],
                  "BATCHxSIZExCHANNELS of the layer's input.")
flags.DEFINE_integer("rounds", 11, "Timed rounds; medians are reported.")
OUT = 16


def _strided(x, kernel):
    return kernels.XLA.downsample(x, kernel)


def _kernel_grad(forward):
    def grad(x, kernel, cotangent):
        return jax.vjp(lambda k: forward(x, k), kernel)[1](cotangent)[0]
    return grad


def _time(group, args, rounds):
    """{name: (median ms, relative max error against the group's first form)}."""
    compiled = {name: jax.jit(fn) for name, fn in group.items()}
    outputs = {name: np.asarray(fn(*args)) for name, fn in compiled.items()}
    reference = next(iter(outputs.values()))
    scale = float(np.max(np.abs(reference)))
    seconds = {name: [] for name in compiled}
    order = list(compiled)
    for _ in range(rounds):
        order.reverse()
        for name in order:
            start = time.perf_counter()
            jax.block_until_ready(compiled[name](*args))
            seconds[name].append(time.perf_counter() - start)
    return {name: (1e3 * float(np.median(s)),
                   float(np.max(np.abs(outputs[name] - reference))) / scale)
            for name, s in seconds.items()}


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()  # as in training
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores")
    print("| input | pass | " + " | ".join(["strided", "s2d", "taps"]) + " | max rel. error |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for case in FLAGS.cases:
        batch, size, channels = (int(v) for v in case.split("x"))
        x = rng.standard_normal((batch, size, size, channels)).astype(np.float32)
        kernel = rng.standard_normal((4, 4, channels, OUT)).astype(np.float32)
        cotangent = rng.standard_normal((batch, size // 2, size // 2, OUT)).astype(np.float32)
        forward = _time({"strided": _strided, "s2d": cpu_kernels.downsample_by_s2d,
                         "taps": cpu_kernels.downsample_by_taps}, (x, kernel), FLAGS.rounds)
        grads = _time({"strided": _kernel_grad(_strided),
                       "s2d": _kernel_grad(cpu_kernels.downsample_by_s2d)},
                      (x, kernel, cotangent), FLAGS.rounds)
        for name, row in (("forward", forward), ("kernel grad", grads)):
            cells = [f"{row[f][0]:.2f}" if f in row else "" for f in ("strided", "s2d", "taps")]
            error = max(e for _, e in row.values())
            print(f"| {case} | {name} | " + " | ".join(cells) + f" | {error:.1e} |", flush=True)


if __name__ == "__main__":
    app.run(main)
