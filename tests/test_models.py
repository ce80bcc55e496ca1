"""The AE's layers against their PyTorch meaning, written as numpy loops."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax import models


def _init_apply(module, x, **kwargs):
    variables = module.init(jax.random.PRNGKey(0), x, **kwargs)
    return variables, module.apply(variables, x, **kwargs)


def conv2d_loop(x, kernel, stride, padding):
    """torch.nn.functional.conv2d in NHWC/HWIO, as a direct loop."""
    n, h, w, _ = x.shape
    k, _, _, out = kernel.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    y = np.zeros((n, oh, ow, out))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            y[:, i, j, :] = np.einsum("nabc,abco->no", patch, kernel)
    return y


def conv_transpose2d_loop(x, weight, stride, padding):
    """torch.nn.functional.conv_transpose2d with torch's weight layout [in, out, k, k]."""
    n, h, w, _ = x.shape
    _, out, k, _ = weight.shape
    full = np.zeros((n, (h - 1) * stride + k, (w - 1) * stride + k, out))
    for i in range(h):
        for j in range(w):
            full[:, i * stride:i * stride + k, j * stride:j * stride + k, :] += np.einsum(
                "nc,coab->nabo", x[:, i, j, :], weight)
    oh, ow = (h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k
    return full[:, padding:padding + oh, padding:padding + ow, :]


def test_parameter_count_matches_reference():
    model = models.AutoEncoder(latent_size=16, channels=1)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 64, 64, 1)), train=False)
    assert models.count_params(variables["params"]) == 2_351_184


@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(channels):
    model = models.AutoEncoder(latent_size=7, channels=channels)
    x = jnp.zeros((3, 64, 64, channels))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out["recon"].shape == (3, 64, 64, channels)
    assert out["z"].shape == (3, 7)


def test_deep_and_spatial_variants():
    model = models.AutoEncoder(latent_size=4, spatial=True, encoder_depth=2, decoder_depth=3,
                               base_width=4, hidden_width=8)
    x = jnp.zeros((2, 32, 32, 1))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    out = model.apply(variables, x, train=False)
    assert out["recon"].shape == (2, 32, 32, 1)
    assert out["z"].shape == (2, 2, 2, 4)
    kernels = [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(
        variables["params"]) if "kernel" in jax.tree_util.keystr(path)]
    # 4 down convs + 4 extra encoder 3x3 + 4 bottleneck 1x1 + 4*2 extra decoder 3x3 + 4 up.
    assert len(kernels) == 4 + 4 + 4 + 8 + 4
    assert (3, 3, 4, 4) in kernels and (1, 1, 16, 8) in kernels


def test_conv_4x4_stride2_matches_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    variables, y = _init_apply(models.Conv(5, 4, stride=2, padding=1), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(y, conv2d_loop(x, kernel, 2, 1), rtol=1e-4, atol=1e-5)
    assert y.shape == (2, 4, 4, 5)


# Channel counts on each side of models.TAPS_DOWN_MAX_CHANNELS, S2D_DOWN_MAX_CHANNELS,
# S2D_UP_MAX_CHANNELS (and S2D_UP_INFERENCE_MAX_CHANNELS), so that every lowering of each
# resampling convolution (and of its input gradient) runs.
@pytest.mark.parametrize("shape", [(2, 8, 6, 1), (2, 8, 6, 3), (2, 8, 6, 6), (2, 7, 5, 3),
                                   (2, 7, 5, 1)])
def test_downsample_conv_gradients_match_xla(shape):
    assert models.TAPS_DOWN_MAX_CHANNELS == 2
    assert models.S2D_DOWN_MAX_CHANNELS == 4 and models.S2D_UP_MAX_CHANNELS == 4
    assert models.S2D_UP_INFERENCE_MAX_CHANNELS == 16
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    module = models.Conv(5, 4, stride=2, padding=1)
    variables = module.init(jax.random.PRNGKey(0), x)
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(module.apply(variables, x), conv2d_loop(np.asarray(x), kernel, 2, 1),
                               rtol=1e-4, atol=1e-5)

    def loss(v, x, phases):
        conv = models.Conv(5, 4, stride=2, padding=1, phases=phases)
        return jnp.sum(jnp.sin(conv.apply(v, x)))

    fast = jax.grad(loss, argnums=(0, 1))(variables, x, True)
    plain = jax.grad(loss, argnums=(0, 1))(variables, x, False)
    np.testing.assert_allclose(fast[1], plain[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast[0]["params"]["kernel"], plain[0]["params"]["kernel"],
                               rtol=1e-4, atol=1e-5)


def test_space_to_depth_layout_and_inverse():
    x = np.arange(2 * 4 * 6 * 3, dtype=np.float32).reshape(2, 4, 6, 3)
    s = np.asarray(models.space_to_depth(jnp.asarray(x)))
    assert s.shape == (2, 2, 3, 12)
    for n, i, j, p, q, c in itertools.product(range(2), range(2), range(3), range(2), range(2),
                                              range(3)):
        assert s[n, i, j, (2 * p + q) * 3 + c] == x[n, 2 * i + p, 2 * j + q, c]
    np.testing.assert_array_equal(models.depth_to_space(jnp.asarray(s)), x)


@pytest.mark.parametrize("features", [3, 20])
def test_resampling_lowerings_are_the_same_functions(features):
    """Space-to-depth and phase/strided lowerings against XLA's plain convolutions."""
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal((2, 6, 4, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((4, 4, 5, features)), jnp.float32)
    plain_up = models._convolve(x, kernel, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2))
    for up in (models.upsample_by_s2d, models.upsample_by_phases, models.upsample_by_products):
        np.testing.assert_allclose(up(x, kernel), plain_up, rtol=1e-4, atol=1e-4)
    plain_down = models._conv(x, kernel, 2, 1)
    np.testing.assert_allclose(models.downsample_by_s2d(x, kernel), plain_down,
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(models.downsample_by_taps(x, kernel), plain_down,
                               rtol=1e-4, atol=1e-4)
    odd = x[:, :5, :3]  # output rows and columns of an odd-sized input
    np.testing.assert_allclose(models.downsample_by_taps(odd, kernel),
                               models._conv(odd, kernel, 2, 1), rtol=1e-4, atol=1e-4)


def test_relu_is_max_with_relu_gradient():
    x = jnp.asarray([-2.0, -0.0, 0.0, 1e-30, 3.0, jnp.inf, -jnp.inf, jnp.nan], jnp.float32)
    np.testing.assert_array_equal(models.relu(x), jax.nn.relu(x))  # NaN stays NaN
    finite = x[:5]
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(models.relu(v) * v))(finite),
                                  jax.grad(lambda v: jnp.sum(jax.nn.relu(v) * v))(finite))
    np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(models.relu(v)))(finite),
                                  [0.0, 0.0, 0.0, 1.0, 1.0])


def test_conv_transpose_matches_torch_semantics():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    variables, y = _init_apply(models.ConvTranspose(5), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])  # [k, k, in, out] of the forward conv
    torch_weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # [in, out, k, k]
    np.testing.assert_allclose(y, conv_transpose2d_loop(x, torch_weight, 2, 1),
                               rtol=1e-4, atol=1e-5)
    assert y.shape == (2, 8, 8, 5)


def _bound_used(values, bound):
    values = np.abs(np.asarray(values))
    return values.max() <= bound and values.max() > 0.9 * bound


def test_initialisation_matches_pytorch_defaults():
    model = models.AutoEncoder(latent_size=16)
    params = model.init(jax.random.PRNGKey(3), jnp.zeros((1, 64, 64, 1)), train=False)["params"]
    first_conv = params["ConvBlock_0"]["Conv_0"]["kernel"]  # fan_in 1*4*4
    assert _bound_used(first_conv, 1 / np.sqrt(16))
    up = params["ConvBlock_5"]["ConvTranspose_0"]["kernel"]  # 64 -> 32: torch fan_in 32*4*4
    assert up.shape == (4, 4, 64, 32)
    assert _bound_used(up, 1 / np.sqrt(32 * 16))
    dense = params["Bottleneck_0"]["to_latent"]["Dense_0"]  # 1024 -> 16
    assert _bound_used(dense["kernel"], 1 / np.sqrt(1024))
    assert _bound_used(dense["bias"], 1 / np.sqrt(1024))
    dense = params["Bottleneck_0"]["from_latent"]["Dense_0"]  # 16 -> 1024
    assert _bound_used(dense["bias"], 1 / np.sqrt(16))
    bn = params["Bottleneck_0"]["BatchNorm_0"]
    assert np.all(bn["scale"] == 1) and np.all(bn["bias"] == 0)


def test_batchnorm_train_and_eval_follow_pytorch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3, 3, 4)).astype(np.float32) * 2 + 1
    bn = models.BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
    y, updates = bn.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    flat = x.reshape(-1, 4)
    mean, var = flat.mean(0), flat.var(0)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-5)
    stats = updates["batch_stats"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    y_eval = bn.apply({"params": variables["params"], "batch_stats": stats}, jnp.asarray(x),
                      train=False)
    np.testing.assert_allclose(y_eval, (x - stats["mean"]) / np.sqrt(stats["var"] + 1e-5),
                               rtol=1e-4, atol=1e-5)


def test_batchnorm_mask_ignores_padding_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    padded = np.concatenate([x, 100 * np.ones((3, 4), np.float32)])
    bn = models.BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
    y, stats = bn.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    mask = jnp.asarray([1.0] * 5 + [0.0] * 3)
    y_pad, stats_pad = bn.apply(variables, jnp.asarray(padded), train=True, mask=mask,
                                mutable=["batch_stats"])
    np.testing.assert_allclose(y_pad[:5], y, rtol=1e-5, atol=1e-6)
    for key in ("mean", "var"):
        np.testing.assert_allclose(stats_pad["batch_stats"][key], stats["batch_stats"][key],
                                   rtol=1e-5, atol=1e-6)


def _batch_norm_by_autodiff(x, weights, scale, bias, axis_name=None):
    """The plain weighted BatchNorm, differentiated by JAX: the reference for the closed form."""
    def total(v, axes=None):
        v = jnp.sum(v, axes)
        return v if axis_name is None else jax.lax.psum(v, axis_name)

    rows = weights.reshape((-1,) + (1,) * (x.ndim - 1))
    axes = tuple(range(x.ndim - 1))
    count = total(weights) * np.prod(x.shape[1:-1])
    mean = total(rows * x, axes) / count
    var = total(rows * (x - mean) ** 2, axes) / count
    y = (x - mean) / jnp.sqrt(var + models.BN_EPSILON) * scale + bias
    return y, mean, var, count


@pytest.mark.parametrize("shape", [(6, 3, 2, 4), (7, 5)])
def test_batch_norm_gradient_matches_autodiff(shape):
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

    fast = jax.grad(objective(models.batch_norm_train), argnums=(0, 1, 2))(x, scale, bias)
    plain = jax.grad(objective(_batch_norm_by_autodiff), argnums=(0, 1, 2))(x, scale, bias)
    for a, b in zip(fast, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_norm_gradient_across_devices_matches_autodiff():
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
        return jax.vmap(local, axis_name="d")(x, weights, probe)

    for a, b in zip(grads(models.batch_norm_train), grads(_batch_norm_by_autodiff),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_resize_latent_pads_and_cuts_only_latent_axes():
    model = models.AutoEncoder(latent_size=3, base_width=4, hidden_width=8)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False)["params"]
    padded = models.resize_latent(params, 5)
    bottleneck = padded["Bottleneck_0"]
    assert bottleneck["to_latent"]["Dense_0"]["kernel"].shape == (8, 5)
    assert bottleneck["to_latent"]["Dense_0"]["bias"].shape == (5,)
    assert bottleneck["from_latent"]["Dense_0"]["kernel"].shape == (5, 8)
    assert bottleneck["from_latent"]["Dense_0"]["bias"].shape == (8,)
    assert np.all(bottleneck["from_latent"]["Dense_0"]["kernel"][3:] == 0)
    back = models.resize_latent(padded, 3)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(params),
                    strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("phases", [True, False])
# 1: the last layer (products evaluated, a one-channel input gradient); 8: space-to-depth
# evaluated, phases trained
@pytest.mark.parametrize("features", [1, 3, 8, 20])
def test_conv_transpose_lowerings_match_loop(phases, features):
    assert models.PRODUCTS_UP_MAX_CHANNELS == 1
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    module = models.ConvTranspose(features, phases=phases)
    variables = module.init(jax.random.PRNGKey(2), jnp.asarray(x))
    y = module.apply(variables, jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])
    expected = conv_transpose2d_loop(x, kernel[::-1, ::-1].transpose(2, 3, 0, 1), 2, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    # Gradients agree too (what training sees): the kernel's, and the input's, which the
    # fast lowerings compute as the adjoint downsampling convolution.
    def loss(v, x, p):
        return jnp.sum(jnp.sin(models.ConvTranspose(features, phases=p).apply(v, x)))
    g_phase, g_plain = (jax.grad(loss, argnums=(0, 1))(variables, jnp.asarray(x), p)
                        for p in (True, False))
    np.testing.assert_allclose(g_phase[0]["params"]["kernel"], g_plain[0]["params"]["kernel"],
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g_phase[1], g_plain[1], rtol=1e-4, atol=1e-5)


def test_autoencoder_with_and_without_phase_convs_is_the_same_function():
    x = jax.random.normal(jax.random.PRNGKey(3), (4, 32, 32, 1))
    fast = models.AutoEncoder(latent_size=4, base_width=4, hidden_width=8)
    plain = models.AutoEncoder(latent_size=4, base_width=4, hidden_width=8, phases=False)
    variables = fast.init(jax.random.PRNGKey(0), x, train=False)

    def loss(model, params):
        out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                             train=True, mutable=["batch_stats"])
        return jnp.mean(jnp.square(out["recon"] - x))

    value_fast, grad_fast = jax.value_and_grad(lambda p: loss(fast, p))(variables["params"])
    value_plain, grad_plain = jax.value_and_grad(lambda p: loss(plain, p))(variables["params"])
    np.testing.assert_allclose(value_fast, value_plain, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(grad_fast), jax.tree_util.tree_leaves(grad_plain),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
