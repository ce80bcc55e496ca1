"""The XLA:CPU kernel forms compute the same functions as XLA's own lowering (values and
gradients), at channel counts on each side of every limit that switches between forms."""

import itertools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.nets import cpu_kernels, kernels, layers
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder
from ae4ad_jax.nets.cpu_kernels import CPU
from tests.nets.test_layers import conv2d_loop, conv_transpose2d_loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _around(*limits):
    """Channel counts at and just above each limit (and 1)."""
    return sorted({1} | {c for limit in limits for c in (limit, limit + 1)})


def _grads(module_fn, variables, x):
    """Gradients of a nonlinear function of the output, for the XLA and the CPU kernels."""
    def loss(v, x, kernels):
        return jnp.sum(jnp.sin(module_fn(kernels).apply(v, x)))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    return [grad(variables, x, k) for k in (kernels.XLA, CPU)]


def _assert_tree_close(a, b, rtol=1e-4, atol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("channels", _around(cpu_kernels.TAPS_DOWN_MAX_CHANNELS,
                                             cpu_kernels.S2D_DOWN_MAX_CHANNELS))
@pytest.mark.parametrize("size", [(8, 6), (7, 5)])  # even and odd inputs
def test_downsample_matches_loop_and_xla_gradients(channels, size):
    x = jnp.asarray(np.random.default_rng(6).standard_normal((2, *size, channels)), jnp.float32)

    def module(kernels):
        return layers.Conv(5, 4, 2, 1, kernels)

    variables = module(CPU).init(jax.random.PRNGKey(0), x)
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(module(CPU).apply(variables, x),
                               conv2d_loop(np.asarray(x), kernel, 2, 1), rtol=1e-4, atol=1e-5)
    plain, fast = _grads(module, variables, x)
    _assert_tree_close(fast, plain)


@pytest.mark.parametrize("features", _around(cpu_kernels.PRODUCTS_UP_MAX_CHANNELS,
                                             cpu_kernels.S2D_UP_MAX_CHANNELS,
                                             cpu_kernels.S2D_UP_INFERENCE_MAX_CHANNELS))
def test_upsample_matches_loop_and_xla_gradients(features):
    x = np.random.default_rng(5).standard_normal((2, 5, 3, 4)).astype(np.float32)

    def module(kernels):
        return layers.ConvTranspose(features, kernels)

    variables = module(CPU).init(jax.random.PRNGKey(2), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])
    expected = conv_transpose2d_loop(x, kernel[::-1, ::-1].transpose(2, 3, 0, 1), 2, 1)
    np.testing.assert_allclose(module(CPU).apply(variables, jnp.asarray(x)), expected,
                               rtol=1e-4, atol=1e-5)
    plain, fast = _grads(module, variables, jnp.asarray(x))
    _assert_tree_close(fast, plain, atol=1e-4)


def test_space_to_depth_layout_and_inverse():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    s = np.asarray(cpu_kernels.space_to_depth(jnp.asarray(x)))
    assert s.shape == (2, 2, 3, 12)
    for n, i, j, p, q, c in itertools.product(range(2), range(2), range(3), range(2), range(2),
                                              range(3)):
        assert s[n, i, j, (2 * p + q) * 3 + c] == x[n, 2 * i + p, 2 * j + q, c]
    np.testing.assert_array_equal(cpu_kernels.depth_to_space(jnp.asarray(s)), x)


@pytest.mark.parametrize("features", [3, 20])
def test_every_resampling_form_is_the_same_function(features):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((2, 6, 4, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((4, 4, 5, features)), jnp.float32)
    plain_up = kernels.XLA.upsample(x, kernel)
    for up in (cpu_kernels.upsample_by_s2d, cpu_kernels.upsample_by_phases,
               cpu_kernels.upsample_by_products):
        np.testing.assert_allclose(up(x, kernel), plain_up, rtol=1e-4, atol=1e-4)
    for odd in (False, True):
        part = x[:, :5, :3] if odd else x
        plain_down = kernels.XLA.downsample(part, kernel)
        np.testing.assert_allclose(cpu_kernels.downsample_by_taps(part, kernel), plain_down,
                                   rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cpu_kernels.downsample_by_s2d(x, kernel),
                               kernels.XLA.downsample(x, kernel), rtol=1e-4, atol=1e-4)


def test_relu_is_max_with_relu_gradient():
    x = jnp.asarray([-2.0, -0.0, 0.0, 1e-30, 3.0, jnp.inf, -jnp.inf, jnp.nan], jnp.float32)
    np.testing.assert_array_equal(cpu_kernels.relu(x), jax.nn.relu(x))  # NaN stays NaN
    finite = x[:5]
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(cpu_kernels.relu(v) * v))(finite),
                                  jax.grad(lambda v: jnp.sum(jax.nn.relu(v) * v))(finite))
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(cpu_kernels.relu(v)))(finite),
                                  [0.0, 0.0, 0.0, 1.0, 1.0])


@pytest.mark.parametrize("shape", [(6, 3, 2, 4), (7, 5)])
def test_batch_norm_matches_xla_values_and_gradients(shape):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal(shape) * 2 + 1, jnp.float32)
    weights = jnp.asarray((np.arange(shape[0]) < shape[0] - 2).astype(np.float32))
    scale = jnp.asarray(rng.uniform(0.5, 1.5, shape[-1]), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(shape[-1]), jnp.float32)
    probe = [jnp.asarray(rng.standard_normal(s), jnp.float32)
             for s in (shape, shape[-1:], shape[-1:])]

    def objective(fn):
        def f(x, scale, bias):
            y, mean, var, _ = fn(x, weights, scale, bias)
            return (jnp.sum(jnp.sin(y) * probe[0]) + jnp.sum(mean * probe[1])
                    + jnp.sum(var * probe[2]))
        return f

    for fn in (cpu_kernels.batch_norm, kernels.batch_norm_statistics):
        y, mean, var, count = fn(x, weights, scale, bias)
        real = np.asarray(x)[:shape[0] - 2].reshape(-1, shape[-1])
        np.testing.assert_allclose(mean, real.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, real.var(0), rtol=1e-4)
        assert count == real.shape[0]
    fast = jax.jit(jax.grad(objective(cpu_kernels.batch_norm), argnums=(0, 1, 2)))(
        x, scale, bias)
    plain = jax.jit(jax.grad(objective(kernels.batch_norm_statistics), argnums=(0, 1, 2)))(
        x, scale, bias)
    _assert_tree_close(fast, plain)


def test_batch_norm_across_devices_matches_xla():
    """Statistics pooled over an axis (vmap with axis_name stands in for devices)."""
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.standard_normal((3, 4, 2, 2, 3)), jnp.float32)  # [devices, B, h, w, C]
    weights = jnp.asarray(rng.integers(0, 2, (3, 4)), jnp.float32).at[:, 0].set(1.0)
    scale, bias = jnp.full(3, 1.3), jnp.full(3, 0.2)
    probe = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

    def grads(fn):
        def local(x, w, p):
            return jax.grad(lambda x, s: jnp.sum(jnp.sin(fn(x, w, s, bias, "d")[0]) * p),
                            argnums=(0, 1))(x, scale)
        return jax.jit(jax.vmap(local, axis_name="d"))(x, weights, probe)

    _assert_tree_close(grads(cpu_kernels.batch_norm), grads(kernels.batch_norm_statistics))


def test_autoencoder_with_cpu_kernels_is_the_same_function():
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 32, 32, 1))
    small = Architecture(base_width=4, hidden_width=8)
    fast = AutoEncoder(latent_size=4, channels=1, architecture=small, kernels=CPU)
    plain = AutoEncoder(latent_size=4, channels=1, architecture=small)
    variables = jax.jit(lambda key: fast.init(key, x, train=False))(jax.random.PRNGKey(0))

    def loss(model, params):
        out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                             train=True, mutable=["batch_stats"])
        return jnp.mean(jnp.square(out["recon"] - x))

    value_fast, grad_fast = jax.jit(jax.value_and_grad(lambda p: loss(fast, p)))(
        variables["params"])
    value_plain, grad_plain = jax.jit(jax.value_and_grad(lambda p: loss(plain, p)))(
        variables["params"])
    np.testing.assert_allclose(value_fast, value_plain, rtol=1e-5)
    _assert_tree_close(grad_fast, grad_plain, rtol=1e-3, atol=1e-6)
    evaluated = [jax.jit(lambda v, m=m: m.apply(v, x, train=False)["recon"])(variables)
                 for m in (fast, plain)]
    np.testing.assert_allclose(evaluated[0], evaluated[1], rtol=1e-4, atol=1e-5)


def _python(code, **env):
    environment = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    environment.update(env, JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_import_changes_no_process_setting():
    code = ("import os, ae4ad_jax, ae4ad_jax.training.loop, ae4ad_jax.main; "
            "print(repr(os.environ.get('XLA_FLAGS')))")
    assert _python(code) == "None"
    assert _python(code, XLA_FLAGS="--xla_cpu_enable_fast_math=false") == \
        "'--xla_cpu_enable_fast_math=false'"


def test_entry_point_flag_is_added_before_jax_starts_and_a_users_own_choice_wins():
    code = ("import os; from ae4ad_jax.nets import cpu_kernels; "
            "applied = cpu_kernels.apply_xla_cpu_flags(); import jax; jax.numpy.ones(1); "
            "late = cpu_kernels.apply_xla_cpu_flags(); "
            "print(applied, late, os.environ.get('XLA_FLAGS'))")
    assert _python(code, XLA_FLAGS="--xla_cpu_enable_fast_math=false") == (
        f"True True --xla_cpu_enable_fast_math=false {cpu_kernels.XLA_CPU_FLAG}")
    own = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
    assert _python(code, XLA_FLAGS=own) == f"False False {own}"
    started = ("import os; import jax; jax.numpy.ones(1); "
               "from ae4ad_jax.nets import cpu_kernels; "
               "print(cpu_kernels.apply_xla_cpu_flags(), os.environ.get('XLA_FLAGS'))")
    assert _python(started) == "False None"  # too late: reported, nothing changed
