"""The paper's AE against a forward pass written here in numpy from its description alone
(docs/methods.md): four blocks of a 4x4 convolution of stride 2 and padding 1 (no bias),
BatchNorm and ReLU; a linear bottleneck (linear, BatchNorm, ReLU, linear to z; linear,
BatchNorm, ReLU, linear back); three blocks of a 4x4 transposed convolution of stride 2
and padding 1, BatchNorm and ReLU; a last transposed convolution alone. With the same
weights the Flax module must give the same reconstruction and code within 1e-5, in
training mode (batch statistics) and in evaluation mode (running statistics), with
XLA's layer kernels and with the CPU's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.nets import cpu_kernels, kernels
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder
from ae4ad_jax.nets.layers import BN_EPSILON

SIZE, CHANNELS, LATENT, WIDTH, HIDDEN, BATCH = 32, 1, 4, 4, 16, 3


def conv_down(x, kernel):
    """4x4 cross-correlation, stride 2, zero padding 1: x [B, H, W, I], kernel [4, 4, I, O]
    (rows, columns, in, out)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    b, h, w, _ = x.shape
    out = np.zeros((b, h // 2, w // 2, kernel.shape[-1]))
    for oy in range(h // 2):
        for ox in range(w // 2):
            patch = padded[:, 2 * oy:2 * oy + 4, 2 * ox:2 * ox + 4, :]  # [B, 4, 4, I]
            out[:, oy, ox, :] = np.einsum("byxi,yxio->bo", patch, kernel)
    return out


def conv_up(x, weight):
    """PyTorch's ConvTranspose2d(4, stride=2, padding=1) by its definition: every input
    pixel (iy, ix) adds weight[i, o, a, b] times its value at output (2 iy - 1 + a,
    2 ix - 1 + b). x [B, H, W, I], weight [I, O, 4, 4]."""
    b, h, w, _ = x.shape
    out = np.zeros((b, 2 * h + 2, 2 * w + 2, weight.shape[1]))  # one row/column spare
    for iy in range(h):
        for ix in range(w):
            for a in range(4):
                for c in range(4):
                    out[:, 2 * iy + a, 2 * ix + c, :] += x[:, iy, ix, :] @ weight[:, :, a, c]
    return out[:, 1:-1, 1:-1, :]  # output position y sits at 1 + y


def batch_norm(x, p, stats, train):
    """Normalise every channel (the last axis) by the batch's mean and biased variance in
    training, by the running ones in evaluation; then scale and shift."""
    axes = tuple(range(x.ndim - 1))
    mean, var = (x.mean(axes), x.var(axes)) if train else (stats["mean"], stats["var"])
    return (x - mean) / np.sqrt(var + BN_EPSILON) * p["scale"] + p["bias"]


def relu(x):
    return np.maximum(x, 0.0)


def reference_forward(params, stats, x, train):
    """(reconstruction, z) of the paper's AE, float64."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    s = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), stats)
    h = x
    for i in range(4):
        block = f"ConvBlock_{i}"
        h = relu(batch_norm(conv_down(h, p[block]["Conv_0"]["kernel"]), p[block]["BatchNorm_0"],
                            s[block]["BatchNorm_0"], train))
    shape = h.shape
    bottleneck, bn = p["Bottleneck_0"], s["Bottleneck_0"]

    def linear(v, name):
        return v @ bottleneck[name]["Dense_0"]["kernel"] + bottleneck[name]["Dense_0"]["bias"]

    hidden = relu(batch_norm(linear(h.reshape(shape[0], -1), "encode_hidden"),
                             bottleneck["BatchNorm_0"], bn["BatchNorm_0"], train))
    z = linear(hidden, "to_latent")
    hidden = relu(batch_norm(linear(z, "from_latent"), bottleneck["BatchNorm_1"],
                             bn["BatchNorm_1"], train))
    h = linear(hidden, "decode_features").reshape(shape)
    for i in range(4, 8):
        block = f"ConvBlock_{i}"
        # The module keeps the kernel of the equivalent convolution: torch's weight
        # W[i, o, a, b] is kernel[3 - a, 3 - b, i, o].
        weight = p[block]["ConvTranspose_0"]["kernel"][::-1, ::-1].transpose(2, 3, 0, 1)
        h = conv_up(h, weight)
        if i < 7:
            h = relu(batch_norm(h, p[block]["BatchNorm_0"], s[block]["BatchNorm_0"], train))
    return h, z


@pytest.fixture(scope="module")
def weights():
    """The module's own initialisation, with BatchNorm scales, shifts and running
    statistics drawn at random so that every one of them counts."""
    model = AutoEncoder(LATENT, CHANNELS, Architecture(base_width=WIDTH, hidden_width=HIDDEN))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, SIZE, SIZE, CHANNELS)),
                           train=False)
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = path[-1].key
        if name in ("scale", "var"):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        if name in ("bias", "mean") and "BatchNorm" in str(path):
            return jnp.asarray(rng.normal(0, 0.3, leaf.shape), jnp.float32)
        return leaf

    variables = jax.tree_util.tree_map_with_path(draw, variables)
    x = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS))
    return variables, x


@pytest.mark.parametrize("layer_kernels", [kernels.XLA, cpu_kernels.CPU], ids=["xla", "cpu"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_the_module_computes_the_described_network(weights, layer_kernels, train):
    variables, x = weights
    model = AutoEncoder(LATENT, CHANNELS, Architecture(base_width=WIDTH, hidden_width=HIDDEN),
                        kernels=layer_kernels)
    if train:
        outputs, _ = model.apply(variables, jnp.asarray(x, jnp.float32), train=True,
                                 mutable=["batch_stats"])
    else:
        outputs = model.apply(variables, jnp.asarray(x, jnp.float32), train=False)
    recon, z = reference_forward(variables["params"], variables["batch_stats"], x, train)
    assert recon.shape == (BATCH, SIZE, SIZE, CHANNELS)
    np.testing.assert_allclose(outputs["z"], z, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(outputs["recon"], recon, atol=1e-5, rtol=1e-5)
    assert np.abs(recon).max() > 0.1  # not a trivially small output
