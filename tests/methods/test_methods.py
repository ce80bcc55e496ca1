"""The method family: parameter counts against the reference, each distinct training run
briefly on `phantom` and scored by every method that shares it, and each method's own
part against a hand-computed or independent answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import phantom
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import (
    aeu,
    ceae,
    contract,
    dae,
    ganomaly,
    image_losses,
    memae,
    parts,
    registry,
    ssim,
    vae,
)
from ae4ad_jax.methods import perceptual as vgg_weights
from ae4ad_jax.nets import autoencoder as models
from ae4ad_jax.nets import layers, vgg
from ae4ad_jax.nets.ganomaly import Discriminator
from ae4ad_jax.parallel import execution
from ae4ad_jax.training import state as state_lib
from ae4ad_jax.training import step

# Trainable parameters of the reference's networks (MedIAnomaly `reconstruction/networks`,
# counted with PyTorch 2.13 on 2026-12-01) at 64x64, base width 16, hidden 1024:
# {method: {(latent size, channels): count}}. The perceptual AE trains the AE only.
REFERENCE_COUNTS = {
    "ae": {(16, 1): 2351184, (4, 1): 2326596, (16, 3): 2352208},
    "ae-spatial": {(16, 1): 382016, (4, 1): 357440},
    "vae": {(16, 1): 2367584, (4, 1): 2330696},
    "memae": {(16, 1): 2351584, (4, 1): 2326696},
    "aeu": {(16, 1): 2351440},
    "constrained-ae": {(16, 1): 2351184},
    "ganomaly": {(16, 1): 4677921, (4, 1): 4641033, (16, 3): 4679969},
    "dae": {(16, 1): 31042369, (16, 3): 31043651},
}
SAME_NETWORK = {"ae-l1": "ae", "ae-ssim": "ae", "ae-perceptual": "ae", "ae-grad": "ae",
                "ceae": "ae", "vae-rec": "vae", "vae-combi": "vae"}


def _config(name, **overrides):
    from configs import default

    config = default.get_config()

    config.channels = 1  # phantom's (a run resolves 0 from its dataset)
    config.method = name
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.mark.parametrize("name", registry.NAMES)
def test_parameter_count_equals_the_reference(name, vgg_file):
    counts = REFERENCE_COUNTS[SAME_NETWORK.get(name, name)]
    for (latent_size, channels), expected in counts.items():
        config = _config(name, latent_size=latent_size, channels=channels)
        config.perceptual.vgg_weights = vgg_file
        model = registry.create(config).create_model(latent_size)
        variables = jax.eval_shape(lambda m=model, c=channels: m.init(
            jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, c)), train=False,
            row_keys=jnp.zeros((1, 2), jnp.uint32)))
        assert layers.count_params(variables["params"]) == expected, (latent_size, channels)


def _tiny(name, vgg_file):
    config = _config(name, image_size=16, latent_size=4)
    config.model.update(base_width=4, hidden_width=16)
    config.dae.update(depth=2, width_log2=2)
    config.ssim.window = 5
    config.perceptual.vgg_weights = vgg_file
    config.execution.kernels = "xla"
    return config


def _training(name):
    """What a method's training is made of: methods equal in these train the same model."""
    method = registry.get(name)
    return (method.model, method.loss, method.corrupt, method.constants, method.group)


TRAININGS = {}
for _name in registry.NAMES:
    TRAININGS.setdefault(_training(_name), []).append(_name)
TRAININGS = list(TRAININGS.values())  # [["ae", "ae-grad"], ..., ["vae", "vae-rec", ...]]


@pytest.fixture
def optimised_for_vgg(request):
    """VGG19's 512-channel convolutions run ~10x slower unoptimised (conftest's setting for
    fast compiles); the perceptual AE's test compiles them optimised."""
    optimise = "ae-perceptual" in request.node.callspec.params["names"]
    before = jax.config.read("jax_disable_most_optimizations")
    if optimise:
        jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def test_trainings_are_shared_as_the_methods_declare():
    """Methods that differ only in their scores share one training; the others each
    train their own (how many follows from the registry)."""
    assert ["ae", "ae-grad"] in TRAININGS and ["vae", "vae-rec", "vae-combi"] in TRAININGS
    alone = ("ae-l1", "ae-spatial", "ae-ssim", "ae-perceptual", "ceae", "memae", "dae")
    assert all([name] in TRAININGS for name in alone)


@pytest.mark.parametrize("names", TRAININGS, ids="+".join)
def test_each_training_lowers_its_loss_and_every_method_maps_every_pixel(
        names, vgg_file, optimised_for_vgg):
    """The loss falls over 2 epochs on phantom; every method that shares the trained model
    scores with maps at the input's size (GANomaly: scores only)."""
    config = _tiny(names[0], vgg_file)
    method = registry.create(config)
    state = state_lib.create_train_state(config, method, [{"latent_size": 4, "seed": 0}])
    images, _ = phantom.generate(64, 16, seed=0, abnormal=False)
    plan = execution.Plan(kernels="xla", lowering="vmap", loop="host", donate=False, chunk=0)
    losses = []
    for epoch in range(1, 3):
        state, metrics = step.train_epoch(state, images, epoch, method=method, batch_size=16,
                                          plan=plan)
        losses.append(float(np.mean(metrics["loss"])))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    test, _ = phantom.generate(6, 16, seed=1, abnormal=True)
    for name in names:
        scorer = registry.create(_tiny(name, vgg_file))
        scores = scoring.score_members(scoring.scoring_weights(state), test, batch_size=64,
                                       method=scorer, plan=plan, with_maps=True)
        assert scores["score"].shape == (1, 6) and np.all(np.isfinite(scores["score"])), name
        if name == "ganomaly":  # an image score from the codes: no map
            assert "map" not in scores
        else:
            assert scores["map"].shape == (1, 6, 16, 16) and np.all(np.isfinite(
                scores["map"])), name
            np.testing.assert_allclose(scores["score"], scores["map"].mean(axis=(2, 3)),
                                       rtol=1e-5)
        assert ("z" in scores) == scorer.has_latent


# ----------------------------------------------------------------------------- VAE


def test_gaussian_kl_of_known_mean_and_log_variance():
    mu, log_var = jnp.array([[0.0, 1.0, -2.0]]), jnp.array([[0.0, np.log(4.0), -1.0]])
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - ln s^2) / 2
    expected = [0.0, (4 + 1 - 1 - np.log(4)) / 2, (np.exp(-1) + 4 - 1 + 1) / 2]
    np.testing.assert_allclose(parts.gaussian_kl(mu, log_var)[0], expected, rtol=1e-6)
    outputs = {"recon": jnp.zeros((1, 2, 2, 1)), "mu": mu, "log_var": log_var}
    images = jnp.full((1, 2, 2, 1), 0.5)
    method = registry.create(_config("vae"))
    assert method.settings.kl_weight == 0.005
    rows, aux = vae.vae_loss(method, outputs, images, jnp.ones(3))
    np.testing.assert_allclose(rows, 0.25 + 0.005 * np.mean(expected), rtol=1e-6)
    # A member of d = 2 in an ensemble of width 3 averages over its own two units.
    _, aux2 = vae.vae_loss(method, outputs | {
        "mu": mu.at[0, 2].set(0.0), "log_var": log_var.at[0, 2].set(0.0)}, images,
        jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(aux2["kl"], np.mean(expected[:2]), rtol=1e-6)


def test_gaussian_noise_is_per_row_and_per_unit():
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    wide, narrow = models.gaussian_noise(keys, 6), models.gaussian_noise(keys[1:], 2)
    np.testing.assert_array_equal(wide[1:, :2], narrow)  # independent of batch and width
    assert abs(float(jnp.std(models.gaussian_noise(jax.random.split(keys[0], 500), 8))) - 1) < .05


# ----------------------------------------------------------------------------- MemAE


def test_memory_addressing_with_shrinkage_against_numpy():
    z = np.array([[1.0, 0.0], [0.2, -0.4]], np.float32)
    memory = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [6.0, 6.0]], np.float32)
    threshold = 0.05
    logits = z @ memory.T
    att = np.exp(logits - logits.max(1, keepdims=True))
    att /= att.sum(1, keepdims=True)
    shrunk = np.where(att > threshold, att, 0.0)  # ReLU hard shrinkage keeps a above lambda
    shrunk /= shrunk.sum(1, keepdims=True)
    z_hat, attention = models.Memory(slots=4, shrink_threshold=threshold).apply(
        {"params": {"memory": memory}}, jnp.asarray(z))
    np.testing.assert_allclose(attention, shrunk, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(z_hat, shrunk @ memory, rtol=1e-4, atol=1e-6)
    assert np.sum(np.asarray(attention) == 0) == np.sum(shrunk == 0) > 0
    entropy = memae.attention_entropy(attention)
    np.testing.assert_allclose(entropy, -np.sum(np.where(shrunk > 0, shrunk * np.log(
        np.maximum(shrunk, 1e-30)), 0), 1), rtol=1e-4)


# ----------------------------------------------------------------------------- CeAE, DAE


def _batch(n, key=0, weights=None):
    key = jax.random.PRNGKey(key)
    return contract.Batch(jnp.ones(n) if weights is None else weights, key,
                          contract.row_keys(key, jnp.arange(n)), jnp.ones(4), jnp.float32(0),
                          jnp.float32(0))


def test_erasure_is_one_square_of_the_configured_area_filled_with_minus_one():
    images = jnp.zeros((5, 64, 64, 1))
    erased = np.asarray(ceae.erase_square(registry.create(_config("ceae")), images, _batch(5)))
    side = 10  # round(sqrt(0.024 * 64 * 64)) = round(9.91)
    corners = set()
    for image in erased[..., 0]:
        rows, cols = np.nonzero(image == -1.0)
        assert len(rows) == side * side
        assert rows.max() - rows.min() == side - 1 and cols.max() - cols.min() == side - 1
        assert np.all(image[image != -1.0] == 0.0)
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 1  # positions differ between rows


def test_align_corners_resize_against_hand_values():
    x = jnp.array([[0.0, 2.0], [4.0, 6.0]]).reshape(1, 2, 2, 1)
    y = np.asarray(image_losses.resize_align_corners(x, 3, 3))[0, ..., 0]
    np.testing.assert_allclose(y, [[0, 1, 2], [2, 3, 4], [4, 5, 6]], atol=1e-6)


def test_coarse_noise_is_smooth_and_kept_to_the_foreground_for_mri():
    images = jnp.full((2, 32, 32, 1), -1.0).at[:, 8:24, 8:24].set(0.5)
    config = _config("dae", dataset="brats")
    config.dae.update(noise_resolution=4, noise_std=0.2)
    noisy = np.asarray(dae.coarse_noise(registry.create(config), images, _batch(2)))
    background = np.asarray(images == -1.0)
    # Outside the foreground the noise is 0, then shifted as the reference: x + 2 (0 - 0.5).
    np.testing.assert_allclose(noisy[background], -2.0, atol=1e-6)
    noise = (noisy - np.asarray(images)) / 2 + 0.5
    inside = noise[0, 8:24, 8:24, 0]
    assert 0.02 < inside.std() < 0.3
    assert np.abs(np.diff(inside, axis=0)).max() < 0.25 * np.abs(inside).max() + 1e-3
    config.dataset = "phantom"
    assert not np.allclose(np.asarray(dae.coarse_noise(registry.create(config), images,
                                                       _batch(2)))[background], -2.0)


# ----------------------------------------------------------------------------- SSIM


def _ssim_loop(x, y, size, sigma):
    """SSIM at every valid window position with explicit window sums (numpy, float64):
    the normalised Gaussian window, K = (0.01, 0.03), images in [0, 1]."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g) / np.sum(g) ** 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = np.zeros((x.shape[0] - size + 1, x.shape[1] - size + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            a, b = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            ma, mb = np.sum(w * a), np.sum(w * b)
            va, vb = np.sum(w * a * a) - ma ** 2, np.sum(w * b * b) - mb ** 2
            cov = np.sum(w * a * b) - ma * mb
            out[i, j] = ((2 * ma * mb + c1) * (2 * cov + c2)
                         / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return out


def _batch_of(image):
    return jnp.asarray(image, jnp.float32)[None, ..., None]


def test_ssim_of_identical_constant_random_and_phantom_images():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 16))
    same = ssim.ssim_map(_batch_of(x), _batch_of(x), 11, 1.5)
    np.testing.assert_allclose(same, 1.0, atol=1e-5)
    a, b = np.full((16, 16), 0.2), np.full((16, 16), 0.6)  # constants: luminance term only
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4)
    constant = ssim.ssim_map(_batch_of(a), _batch_of(b), 11, 1.5)
    np.testing.assert_allclose(constant, expected, rtol=5e-4)  # float32 E[x^2] - mu^2
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    mapped = ssim.ssim_map(_batch_of(x), _batch_of(y), 7, 1.5)
    np.testing.assert_allclose(mapped[0, ..., 0], _ssim_loop(x, y, 7, 1.5), atol=2e-4)
    normal, _ = phantom.generate(1, 32, 0, False)
    abnormal, _ = phantom.generate(1, 32, 1, True)
    pair = (normal[0, ..., 0] / 255.0, abnormal[0, ..., 0] / 255.0)
    mapped = ssim.ssim_map(_batch_of(pair[0]), _batch_of(pair[1]), 11, 1.5)
    np.testing.assert_allclose(mapped[0, ..., 0], _ssim_loop(*pair, 11, 1.5), atol=2e-4)


def test_ssim_map_is_resized_to_the_input():
    outputs = {"recon": jnp.zeros((2, 32, 32, 1))}
    images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 1), minval=-1, maxval=1)
    maps = ssim.ssim_error(registry.create(_config("ae-ssim")), outputs, images)
    assert maps.shape == (2, 32, 32) and np.all(np.isfinite(maps))


def test_the_bilinear_resize_is_jax_image_resize_bitwise():
    """`resize_bilinear` calls `scale_and_translate` (it converts to ONNX with a
    symbolic batch): the numbers of `jax.image.resize` when enlarging, as the methods
    use it (SSIM's valid windows, VGG features, to the input's size); shrinking, its
    float32 scale moves the weights' last bits."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 22, 22, 2))
    for height, width in ((32, 32), (22, 40), (128, 128), (7, 7)):
        expected = jax.jit(lambda v, h=height, w=width: jax.image.resize(
            v, (3, h, w, 2), "linear", antialias=False))(x)
        got = jax.jit(lambda v, h=height, w=width: image_losses.resize_bilinear(v, h, w))(x)
        if height > 22 and width > 22:  # both sides enlarged
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, atol=1e-5)


# ----------------------------------------------------------------------------- gradient maps


def test_gradient_map_against_finite_differences():
    model = models.AutoEncoder(latent_size=3, channels=1, architecture=models.Architecture(
        base_width=4, hidden_width=8))
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1), minval=-1, maxval=1)
    variables = model.init(jax.random.PRNGKey(1), x, train=False)

    def forward(images, keys, train=False):
        return model.apply(variables, images, train=False)

    method = registry.get("ae-grad")
    maps, scores, _ = jax.jit(lambda x: method.score(forward, x, None, jnp.ones(3)))(x)

    @jax.jit
    def per_image(images):
        return parts.per_image_mse(forward(images, None)["recon"], images)

    def mse(images):  # float64 on the host for the differences
        return np.asarray(per_image(images), np.float64)

    step = 1e-2
    for b, i, j in ((0, 3, 4), (1, 10, 2), (0, 8, 8)):
        plus, minus = x.at[b, i, j, 0].add(step), x.at[b, i, j, 0].add(-step)
        numeric = (mse(plus)[b] - mse(minus)[b]) / (2 * step)
        np.testing.assert_allclose(maps[b, i, j], abs(numeric), rtol=0.05, atol=2e-6)
    np.testing.assert_allclose(scores, np.asarray(maps).mean(axis=(1, 2)), rtol=1e-6)


def test_vae_combi_map_is_error_times_kl_gradient():
    config = _tiny("vae-combi", "")
    method = registry.create(config)
    model = method.create_model(4)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 1), minval=-1, maxval=1)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    variables = model.init(jax.random.PRNGKey(1), x, train=False, row_keys=keys)

    def forward(images, row_keys, train=False):
        return model.apply(variables, images, train=False, row_keys=row_keys)

    maps, _, outputs = method.score(forward, x, keys, jnp.ones(4))
    kl_grad = jax.grad(lambda v: jnp.sum(parts.latent_mean(parts.gaussian_kl(
        forward(v, keys)["mu"], forward(v, keys)["log_var"]), jnp.ones(4))))(x)
    expected = np.mean((np.asarray(outputs["recon"]) - np.asarray(x)) ** 2
                       * np.abs(np.asarray(kl_grad)), axis=-1)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-9)


# ----------------------------------------------------------------------------- AE-U


def test_uncertainty_loss_and_map_by_hand():
    outputs = {"recon": jnp.zeros((1, 1, 2, 1)),
               "log_var": jnp.array([0.0, np.log(2.0)]).reshape(1, 1, 2, 1)}
    images = jnp.array([1.0, 2.0]).reshape(1, 1, 2, 1)
    method = registry.create(_config("aeu"))
    rows, _ = aeu.uncertainty_loss(method, outputs, images, jnp.ones(1))
    np.testing.assert_allclose(rows, [(1.0 + 4.0 / 2 + np.log(2.0)) / 2], rtol=1e-6)
    np.testing.assert_allclose(aeu.uncertainty_error(method, outputs, images),
                               [[[1.0, 2.0]]], rtol=1e-6)


# ----------------------------------------------------------------------------- GANomaly


def test_ganomaly_losses_on_a_fixed_batch_and_their_gradients():
    config = _tiny("ganomaly", "")
    method = registry.create(config)
    model = method.create_model(4)
    x = jax.random.uniform(jax.random.PRNGKey(0), (4, 16, 16, 1), minval=-1, maxval=1)
    variables = model.init(jax.random.PRNGKey(1), x, train=False)
    params, stats = variables["params"], variables["batch_stats"]

    def outputs_of(p):
        return model.apply({"params": p, "batch_stats": stats}, x, train=True,
                           mutable=["batch_stats"])[0]

    out = jax.jit(outputs_of)(params)
    rows, aux = method.loss(method, out, x, jnp.ones(4))
    o = jax.tree_util.tree_map(np.asarray, out)
    adversarial = np.mean((o["features_real"] - o["features_fake"]) ** 2, axis=1)
    mse = np.mean((o["recon"] - np.asarray(x)) ** 2, axis=(1, 2, 3))
    encoding = np.mean((o["z"] - o["z_hat"]) ** 2, axis=1)
    p_real, p_fake = 1 / (1 + np.exp(-o["logit_real"])), 1 / (1 + np.exp(-o["logit_fake"]))
    discriminator = 0.5 * (-np.log(p_real) - np.log(1 - p_fake))
    np.testing.assert_allclose(aux["generator_loss"], adversarial + 50 * mse + encoding,
                               rtol=1e-5)
    np.testing.assert_allclose(aux["discriminator_loss"], discriminator, rtol=1e-5)
    np.testing.assert_allclose(rows, adversarial + 50 * mse + encoding + discriminator,
                               rtol=1e-5)
    # One gradient of the sum trains the discriminator on its own loss only: compare with
    # the discriminator alone, on the real images and on the (fixed) reconstructions.
    grads = jax.jit(jax.grad(lambda p: jnp.mean(method.loss(method, outputs_of(p), x,
                                                            jnp.ones(4))[0])))(params)
    discriminator_module = Discriminator((4, 8, 16, 16), 16)
    recon = jnp.asarray(o["recon"])

    def discriminator_loss(p):
        d_vars = {"params": p, "batch_stats": stats["discriminator"]}
        real = discriminator_module.apply(d_vars, x, True, mutable=["batch_stats"])[0][0]
        fake = discriminator_module.apply(d_vars, recon, True, mutable=["batch_stats"])[0][0]
        return jnp.mean(0.5 * (ganomaly.binary_cross_entropy(real, 1.0)
                               + ganomaly.binary_cross_entropy(fake, 0.0)))

    expected = jax.jit(jax.grad(discriminator_loss))(params["discriminator"])
    for got, want in zip(jax.tree_util.tree_leaves(grads["discriminator"]),
                         jax.tree_util.tree_leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_ganomaly_reinitialises_a_collapsed_discriminator_only():
    config = _tiny("ganomaly", "")
    method = registry.create(config)
    state = state_lib.create_train_state(config, method, [{"latent_size": 4, "seed": 0}])
    one = jax.tree_util.tree_map(lambda v: v[0], state)
    key = jax.random.PRNGKey(0)
    kept = method.after_epoch(one, {"discriminator_loss": jnp.float32(0.3)}, key)
    redrawn = method.after_epoch(one, {"discriminator_loss": jnp.float32(1e-6)}, key)
    for a, b in zip(jax.tree_util.tree_leaves(kept.params), jax.tree_util.tree_leaves(
            one.params), strict=True):
        np.testing.assert_array_equal(a, b)
    d_new, d_old = redrawn.params["discriminator"], one.params["discriminator"]
    kernel = np.asarray(d_new["ConvBlock_0"]["Conv_0"]["kernel"])
    assert not np.array_equal(kernel, d_old["ConvBlock_0"]["Conv_0"]["kernel"])
    assert 0.01 < kernel.std() < 0.03
    np.testing.assert_array_equal(d_new["ConvBlock_0"]["BatchNorm_0"]["bias"], 0.0)
    np.testing.assert_array_equal(d_new["features"]["Dense_0"]["kernel"],
                                  d_old["features"]["Dense_0"]["kernel"])
    np.testing.assert_array_equal(redrawn.params["encoder1"]["encode_hidden"]["Dense_0"][
        "kernel"], one.params["encoder1"]["encode_hidden"]["Dense_0"]["kernel"])


# ----------------------------------------------------------------------------- perceptual


def test_vgg_weights_file_errors_name_the_problem(tmp_path, vgg_file):
    with pytest.raises(UserError, match="perceptual.vgg_weights"):
        vgg_weights.load("")
    with pytest.raises(UserError, match="does not exist"):
        vgg_weights.load(str(tmp_path / "missing.npz"))
    arrays = dict(np.load(vgg_file))
    del arrays["features.21.weight"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(UserError, match="features.21.weight"):
        vgg_weights.load(str(tmp_path / "partial.npz"))
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(UserError, match="Cannot read"):
        vgg_weights.load(str(tmp_path / "text.npz"))


def test_perceptual_features_are_vgg_convolutions(vgg_file):
    """relu(conv1_1) of the VGG module against a direct numpy convolution."""
    weights = vgg_weights.load(vgg_file)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 1)).astype(np.float32)
    rgb = (np.repeat(x, 3, -1) * 0.5 + 0.5 - vgg.IMAGENET_MEAN) / np.asarray(vgg.IMAGENET_STD)
    padded = np.pad(rgb, ((0, 0), (1, 1), (1, 1), (0, 0)))
    kernel = weights["conv1_1_kernel"]
    expected = np.zeros((8, 8, 64))
    for i in range(8):
        for j in range(8):
            expected[i, j] = np.einsum("hwc,hwco->o", padded[0, i:i + 3, j:j + 3], kernel)
    expected = np.maximum(expected + weights["conv1_1_bias"], 0)

    variables = {vgg.VGG_COLLECTION: {
        **weights, "feature_mean": weights["feature_mean"][:64],
        "feature_var": weights["feature_var"][:64]}}
    got = vgg.VGGFeatures(vgg.VGG_LAYERS[:1]).apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-4)
