"""The learned rate (nets/rate.py) and the standardised code, against known answers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import norm

from ae4ad_jax.evaluation import codes as code_metrics
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import contract, registry
from ae4ad_jax.nets import layers, rate
from ae4ad_jax.nets.autoencoder import Architecture, AutoEncoder

RATE = rate.Rate(enabled=True, step=0.5)

SIGMAS = (0.5, 1.0, 2.0, 4.0)  # in quantisation steps


def _row_keys(n, seed=0):
    return contract.row_keys(jax.random.PRNGKey(seed), jnp.arange(n))


def _quantised_gaussian_entropy_bits(sigma):
    k = np.arange(-80, 81)
    p = norm.cdf((k + 0.5) / sigma) - norm.cdf((k - 0.5) / sigma)
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def test_training_noise_is_uniform_independent_and_per_row():
    n = 8192
    noise = np.asarray(rate.quantise(jnp.zeros((n, 3)), True, _row_keys(n)))
    assert noise.min() >= -0.5 and noise.max() <= 0.5
    assert abs(noise.mean()) < 0.01
    np.testing.assert_allclose(noise.var(axis=0), 1 / 12, rtol=0.05)
    assert np.max(np.abs(np.corrcoef(noise.T) - np.eye(3))) < 0.05
    # A row's noise depends on its key only: not on the batch, not on the code's width.
    alone = rate.quantise(jnp.zeros((2, 2)), True, _row_keys(n)[5:7])
    np.testing.assert_array_equal(alone, noise[5:7, :2])


def test_evaluation_rounds_with_the_identity_gradient():
    y = jax.random.normal(jax.random.PRNGKey(0), (64, 5)) * 3.0
    np.testing.assert_array_equal(rate.quantise(y, False), np.round(np.asarray(y)))
    weights = jnp.arange(5.0)
    grad = jax.grad(lambda v: jnp.sum(rate.quantise(v, False) * weights))(y)
    np.testing.assert_array_equal(grad, np.broadcast_to(weights, y.shape))


def _numpy_bits(params, q):
    """-log2 p(q) from the density's parameters, one unit and one value at a time."""
    def softplus(x):
        return np.log1p(np.exp(x))

    def logit(x, u):
        h = np.array([x])
        k = 0
        while f"matrix_{k}" in params:
            h = softplus(params[f"matrix_{k}"][:, :, u]) @ h + params[f"bias_{k}"][:, u]
            if f"factor_{k}" in params:
                h = h + np.tanh(params[f"factor_{k}"][:, u]) * np.tanh(h)
            k += 1
        return h[0]

    def sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    out = np.zeros(q.shape)
    for index in np.ndindex(q.shape):
        u = index[-1]
        p = sigmoid(logit(q[index] + 0.5, u)) - sigmoid(logit(q[index] - 0.5, u))
        out[index] = -np.log2(p)
    return out


def test_density_equals_a_numpy_cdf_network():
    density = rate.FactorizedDensity(RATE.filters, RATE.init_scale)
    params = density.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    params = jax.tree_util.tree_map(  # move away from the initial constants and zeros
        lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(1), x.shape), params)
    q = jnp.array([[-3.0, 0.0, 2.0], [1.0, -1.0, 5.0]])
    host = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    np.testing.assert_allclose(density.apply(params, q), _numpy_bits(host, np.asarray(q)),
                               rtol=1e-4)


def test_learned_rate_of_quantised_gaussians_is_their_entropy_in_bits():
    """Codes from a known discrete law (independent Gaussians of known width, rounded to
    the step): fitted with training noise, the rate of held-out rounded codes is within
    2% of the law's entropy."""
    sigmas = np.array(SIGMAS)
    true = sum(_quantised_gaussian_entropy_bits(s) for s in SIGMAS)
    rng = np.random.default_rng(0)
    density = rate.FactorizedDensity(RATE.filters, RATE.init_scale)
    params = density.init(jax.random.PRNGKey(0), jnp.zeros((1, len(SIGMAS))))
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, codes, keys):
        def loss(p):
            return jnp.mean(jnp.sum(density.apply(p, rate.quantise(codes, True, keys)), -1))

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for i in range(1000):
        codes = np.round(rng.standard_normal((256, len(SIGMAS))) * sigmas)
        params, opt_state = step(params, opt_state, jnp.asarray(codes, jnp.float32),
                                 _row_keys(256, seed=i))
    # Held-out codes: the law's values off the grid by less than half a step, rounded.
    held_out = np.round(rng.standard_normal((20000, len(SIGMAS))) * sigmas)
    jitter = rng.uniform(-0.45, 0.45, held_out.shape)
    q = rate.quantise(jnp.asarray(held_out + jitter, jnp.float32), False)
    learned = float(jnp.mean(jnp.sum(density.apply(params, q), -1)))
    assert abs(learned - true) < 0.02 * true, (learned, true)
    assert learned > true - 0.05  # a code length: not below the entropy but by noise


def _small_ae(**fields):
    return AutoEncoder(latent_size=4, channels=1,
                       architecture=Architecture(base_width=4, hidden_width=16), **fields)


def _images(n=32, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (n, 16, 16, 1), minval=-1, maxval=1)


def _trained_statistics(model, variables, images):
    """Variables after a few training-mode calls (running statistics of real codes)."""
    @jax.jit
    def update(variables, keys):
        _, updates = model.apply(variables, images, train=True, row_keys=keys,
                                 mutable=["batch_stats"])
        return {**variables, **updates}

    for i in range(5):
        variables = update(variables, _row_keys(len(images), i))
    return variables


def test_rate_gradients_reach_encoder_and_density_separately():
    model = _small_ae(rate=RATE)
    x = _images()
    variables = model.init(jax.random.PRNGKey(0), x, train=False, row_keys=_row_keys(32))

    def grads(output):
        def total(params):
            out, _ = model.apply({**variables, "params": params}, x, train=True,
                                 row_keys=_row_keys(32), mutable=["batch_stats"])
            return jnp.sum(out[output])

        tree = jax.jit(jax.grad(total))(variables["params"])["Bottleneck_0"]
        return ({k: float(sum(jnp.abs(v).sum() for v in jax.tree_util.tree_leaves(t)))
                 for k, t in tree.items()})

    encoder, density = grads("bits"), grads("density_bits")
    assert encoder[layers.LATENT_UNITS + "_rate"] == 0 and encoder[layers.LATENT_OUT] > 0
    assert density[layers.LATENT_UNITS + "_rate"] > 0 and density[layers.LATENT_OUT] == 0


def test_decoder_reads_the_rounded_standardised_code_and_its_rate():
    step = RATE.step
    model = _small_ae(rate=RATE)
    x = _images()
    variables = _trained_statistics(model, model.init(
        jax.random.PRNGKey(0), x, train=False, row_keys=_row_keys(32)), x)
    out = jax.jit(lambda v: model.apply(v, x, train=False, row_keys=_row_keys(32)))(variables)
    stats = variables["batch_stats"]["Bottleneck_0"][layers.LATENT_UNITS + "_norm"]
    var = np.asarray(stats["var"])
    expected = (np.asarray(out["z"]) - np.asarray(stats["mean"])) / np.sqrt(
        var + layers.LATENT_NORM_FLOOR * var.mean())
    np.testing.assert_allclose(out["z_norm"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["z_quantised"], step * np.round(expected / step), atol=1e-5)
    density = variables["params"]["Bottleneck_0"][layers.LATENT_UNITS + "_rate"]
    host = {k: np.asarray(v, np.float64) for k, v in density.items()}
    bits = _numpy_bits(host, np.round(expected / step)).sum(axis=1)
    np.testing.assert_allclose(out["bits"], bits, rtol=1e-4)
    # Without a step the decoder reads the raw code (the reference's AE) and no rate.
    plain = _small_ae()
    plain_vars = plain.init(jax.random.PRNGKey(0), x, train=False)
    assert "bits" not in plain.apply(plain_vars, x, train=False)


def _rescaled(variables, c):
    """The same function with its code z scaled by c: the latent layer's outputs times c,
    the next layer's inputs divided by c, the code's running statistics rescaled."""
    params = jax.tree_util.tree_map(lambda v: v, variables["params"])
    bottleneck = dict(params["Bottleneck_0"])
    bottleneck[layers.LATENT_OUT] = jax.tree_util.tree_map(lambda v: v * c,
                                                           bottleneck[layers.LATENT_OUT])
    bottleneck[layers.LATENT_IN] = jax.tree_util.tree_map_with_path(
        lambda path, v: v / c if path[-1].key == "kernel" else v, bottleneck[layers.LATENT_IN])
    stats = jax.tree_util.tree_map(lambda v: v, variables["batch_stats"])
    norm = stats["Bottleneck_0"][layers.LATENT_UNITS + "_norm"]
    stats["Bottleneck_0"] = dict(stats["Bottleneck_0"], **{
        layers.LATENT_UNITS + "_norm": {"mean": norm["mean"] * c, "var": norm["var"] * c**2}})
    return {"params": dict(params, Bottleneck_0=bottleneck), "batch_stats": stats}


@pytest.mark.parametrize("c", [1e-3, 0.1, 10.0, 1e3])
def test_normalised_estimates_do_not_change_when_the_code_is_scaled(c):
    method = registry.create(_method_config())
    model = method.create_model(4)
    train_images = _images(64)
    variables = _trained_statistics(model, model.init(
        jax.random.PRNGKey(0), train_images, train=False, row_keys=_row_keys(64)), train_images)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (300, 16, 16, 1)),
                         jnp.uint8)

    def codes(v):
        member = {"variables": jax.tree_util.tree_map(lambda a: a[None], v),
                  "latent_mask": jnp.ones((1, 4)), "rng": jnp.zeros((1, 2), jnp.uint32)}
        out = scoring.score_images(member, images, method=method, batch_size=100,
                                   with_maps=False)
        return jax.tree_util.tree_map(lambda a: np.asarray(a[0]), out)

    base, scaled = codes(variables), codes(_rescaled(variables, c))
    np.testing.assert_allclose(scaled["z"], c * base["z"], rtol=1e-3, atol=1e-6 * c)
    np.testing.assert_allclose(scaled["score"], base["score"], rtol=1e-4)

    def estimates(out, key):
        return code_metrics.entropy_metrics({"codes": out[key]}, 4,
                                            ("gaussian", "knn", "renyi"), prefix=key)

    normal, normal_scaled = estimates(base, "z_norm"), estimates(scaled, "z_norm")
    for name, value in normal.items():
        assert abs(normal_scaled[name] - value) < 1e-3, (name, value, normal_scaled[name])
    raw, raw_scaled = estimates(base, "z"), estimates(scaled, "z")
    shift = raw_scaled["z_gaussian_codes"] - raw["z_gaussian_codes"]
    assert abs(shift - 4 * math.log(c)) < 1e-2  # the raw figure moves by d log c


def _method_config():
    from configs import default

    config = default.get_config()

    config.channels = 1  # phantom's (a run resolves 0 from its dataset)
    config.image_size, config.model.base_width, config.model.hidden_width = 16, 4, 16
    config.latent_size = 4
    return config


def test_training_code_is_the_running_statistics_code_and_cannot_shrink():
    """In training the standardised code already uses the running statistics (so training
    and evaluation see one code), while its gradient ignores a common rescaling of a
    unit's values (batch renormalisation): the rate cannot fall by shrinking z."""
    norm = layers.LatentNorm()
    z = jax.random.normal(jax.random.PRNGKey(0), (64, 3)) * jnp.array([0.2, 1.0, 5.0]) + 1.0
    variables = norm.init(jax.random.PRNGKey(0), z, train=False)
    out, updates = norm.apply(variables, z, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]
    var = np.asarray(stats["var"])
    expected = (np.asarray(z) - np.asarray(stats["mean"])) / np.sqrt(
        var + layers.LATENT_NORM_FLOOR * var.mean())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["mean"], 0.1 * np.asarray(z).mean(0), rtol=1e-5)

    def spread_after_scaling(c):
        return jnp.sum(jnp.square(norm.apply(variables, z * c, train=True,
                                             mutable=["batch_stats"])[0]))

    assert abs(float(jax.grad(spread_after_scaling)(1.0))) < 1e-3
