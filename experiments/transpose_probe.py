"""Where XLA:CPU loses time in the AE's weight gradients: batch-minor transposes.

    python experiments/transpose_probe.py [--sizes=64,128] [--rounds=7]

XLA:CPU computes the kernel gradient of a convolution as another convolution
whose operands it first transposes so that the batch is the minor (fastest)
axis: the activation [N, H, W, C] becomes [C, H, W, N]. Its loop emitter
writes that array in output order, so consecutive writes read inputs H*W*C
floats apart and every cache line of the input is fetched once per channel
it holds. With the preceding BatchNorm + max(x, 0) fused into the transpose
(XLA recomputes them there rather than reading the forward pass's result)
the cost grows several times. `cpu_kernels.relu` writes the ReLU as a select of
two full-size operands, which XLA computes once, so that the transpose reads
a materialised array. This probe times the pieces for the AE's second
encoder layer (Conv 4x4, stride 2, 16 -> 32 channels, batch 64), each the
median of --rounds rounds in which all variants take turns:

  elementwise pass       a + 1 over the activation: the memory-bandwidth yardstick
  batch-minor transpose  the activation to [C, H, W, N], nothing fused
  BN+ReLU+transpose      the same with BatchNorm + ReLU fused in, as in the train step
  identity matmul        the same transpose as a product with the N x N identity
  forward                BN + ReLU + the layer's convolution
  forward + kernel grad  plus XLA's kernel gradient, as autodiff emits it
  ... select ReLU        the same with cpu_kernels.relu (as the AE trains)
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae4ad_jax.nets import cpu_kernels  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["64", "128"], "Input image sizes (the layer sees half).")
flags.DEFINE_integer("rounds", 7, "Timed rounds; medians are reported.")
BATCH, IN, OUT = 64, 16, 32
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                    dimension_numbers=DIMENSIONS)


def _bn_relu(a, mean, scale, bias, relu=lambda t: jnp.maximum(t, 0.0)):
    return relu((a - mean) * scale + bias)


def _variants(size):
    rng = np.random.default_rng(0)
    side = size // 2
    a = jnp.asarray(rng.normal(size=(BATCH, side, side, IN)), jnp.float32)
    stats = [jnp.asarray(rng.normal(size=IN), jnp.float32) for _ in range(3)]
    kernel = jnp.asarray(rng.normal(size=(4, 4, IN, OUT)), jnp.float32)
    grad = jnp.asarray(rng.normal(size=(BATCH, side // 2, side // 2, OUT)), jnp.float32)
    eye = jnp.eye(BATCH, dtype=jnp.float32)

    def batch_minor_by_matmul(a):
        rows = lax.dot_general(a.reshape(BATCH, -1), eye, (((0,), (0,)), ((), ())))
        return rows.reshape(side, side, IN, BATCH).transpose(2, 0, 1, 3)

    def forward_and_kernel_grad(a, *stats, relu=lambda t: jnp.maximum(t, 0.0)):
        y, pullback = jax.vjp(lambda k: _conv(_bn_relu(a, *stats, relu=relu), k), kernel)
        return y, pullback(grad)[0]

    def with_select_relu(a, *stats):
        return forward_and_kernel_grad(a, *stats, relu=cpu_kernels.relu)

    return {
        "elementwise pass": (lambda a: a + 1.0, (a,)),
        "batch-minor transpose": (lambda a: a.transpose(3, 1, 2, 0), (a,)),
        "BN+ReLU+transpose": (lambda a, *s: _bn_relu(a, *s).transpose(3, 1, 2, 0),
                              (a, *stats)),
        "identity matmul": (batch_minor_by_matmul, (a,)),
        "forward": (lambda a, *s: _conv(_bn_relu(a, *s), kernel), (a, *stats)),
        "forward + kernel grad": (forward_and_kernel_grad, (a, *stats)),
        "... select ReLU": (with_select_relu, (a, *stats)),
    }, a


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()  # as in training
    print(f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} cores")
    for size in map(int, FLAGS.sizes):
        variants, a = _variants(size)
        compiled = {}
        for name, (fn, args) in variants.items():
            fn = jax.jit(fn)
            jax.block_until_ready(fn(*args))
            compiled[name] = (fn, args)
        reference = np.asarray(a).transpose(3, 1, 2, 0)
        for name in ("batch-minor transpose", "identity matmul"):
            fn, args = compiled[name]
            np.testing.assert_array_equal(np.asarray(fn(*args)), reference)
        for plain, select in zip(compiled["forward + kernel grad"][0](*compiled["forward"][1]),
                                 compiled["... select ReLU"][0](*compiled["forward"][1]),
                                 strict=True):
            np.testing.assert_array_equal(np.asarray(plain), np.asarray(select))
        seconds = {name: [] for name in compiled}
        order = list(compiled)
        for _ in range(FLAGS.rounds):
            order.reverse()
            for name in order:
                fn, args = compiled[name]
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                seconds[name].append(time.perf_counter() - start)
        print(f"\nlayer input {BATCH}x{size // 2}x{size // 2}x{IN} ({a.size / 1e6:.1f} M floats)")
        print("| piece | ms |\n|---|---|")
        for name, s in seconds.items():
            print(f"| {name} | {1e3 * float(np.median(s)):.2f} |")


if __name__ == "__main__":
    app.run(main)
