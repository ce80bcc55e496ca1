"""The AE (XLA's kernels) against its PyTorch meaning, written as numpy loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.nets import layers
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder


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
    model = AutoEncoder(latent_size=16, channels=1)
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                  jnp.zeros((2, 64, 64, 1)), train=False))
    assert layers.count_params(variables["params"]) == 2_351_184


@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes(channels):
    model = AutoEncoder(latent_size=7, channels=channels)
    x = jnp.zeros((3, 64, 64, channels))
    out = jax.eval_shape(lambda: model.apply(model.init(jax.random.PRNGKey(0), x, train=False),
                                             x, train=True, mutable=["batch_stats"])[0])
    assert out["recon"].shape == (3, 64, 64, channels)
    assert out["z"].shape == (3, 7)


def test_deep_and_spatial_variants():
    model = AutoEncoder(latent_size=4, channels=1, architecture=Architecture(
        spatial=True, encoder_depth=2, decoder_depth=3, base_width=4, hidden_width=8))
    x = jnp.zeros((2, 32, 32, 1))
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
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
    variables, y = _init_apply(layers.Conv(5, 4, stride=2, padding=1), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(y, conv2d_loop(x, kernel, 2, 1), rtol=1e-4, atol=1e-5)
    assert y.shape == (2, 4, 4, 5)


def test_conv_transpose_matches_torch_semantics():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 3)).astype(np.float32)
    variables, y = _init_apply(layers.ConvTranspose(5), jnp.asarray(x))
    kernel = np.asarray(variables["params"]["kernel"])  # [k, k, in, out] of the forward conv
    torch_weight = kernel[::-1, ::-1].transpose(2, 3, 0, 1)  # [in, out, k, k]
    np.testing.assert_allclose(y, conv_transpose2d_loop(x, torch_weight, 2, 1),
                               rtol=1e-4, atol=1e-5)
    assert y.shape == (2, 8, 8, 5)


def _bound_used(values, bound):
    values = np.abs(np.asarray(values))
    return values.max() <= bound and values.max() > 0.9 * bound


def test_initialisation_matches_pytorch_defaults():
    model = AutoEncoder(latent_size=16, channels=1)
    params = jax.jit(lambda key: model.init(key, jnp.zeros((1, 64, 64, 1)), train=False))(
        jax.random.PRNGKey(3))["params"]
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
    bn = layers.BatchNorm()
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
    bn = layers.BatchNorm()
    variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x), train=True)
    y, stats = bn.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    mask = jnp.asarray([1.0] * 5 + [0.0] * 3)
    y_pad, stats_pad = bn.apply(variables, jnp.asarray(padded), train=True, mask=mask,
                                mutable=["batch_stats"])
    np.testing.assert_allclose(y_pad[:5], y, rtol=1e-5, atol=1e-6)
    for key in ("mean", "var"):
        np.testing.assert_allclose(stats_pad["batch_stats"][key], stats["batch_stats"][key],
                                   rtol=1e-5, atol=1e-6)




def test_forward_mode_differentiation_on_the_accelerator_path():
    """jax.jvp through the AE with XLA's kernels; its tangent is the adjoint of the VJP:
    <J v, u> = <v, J^T u> for random v and u."""
    model = AutoEncoder(latent_size=3, channels=1,
                        architecture=Architecture(base_width=4, hidden_width=8))
    rng = np.random.default_rng(4)
    x, v = (jnp.asarray(rng.standard_normal((4, 32, 32, 1)), jnp.float32) for _ in range(2))
    variables = jax.jit(lambda key: model.init(key, x, train=False))(jax.random.PRNGKey(0))

    def recon(x):
        out, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return out["recon"]

    value, tangent = jax.jit(lambda x, v: jax.jvp(recon, (x,), (v,)))(x, v)
    np.testing.assert_allclose(value, jax.jit(recon)(x), rtol=1e-6)
    u = jnp.asarray(rng.standard_normal(value.shape), jnp.float32)
    (cotangent,) = jax.jit(lambda x, u: jax.vjp(recon, x)[1](u))(x, u)
    forward, reverse = float(jnp.vdot(tangent, u)), float(jnp.vdot(v, cotangent))
    assert abs(forward) > 1e-3
    np.testing.assert_allclose(forward, reverse, rtol=1e-3)
