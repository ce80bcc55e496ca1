"""Reconstruction methods: the benchmark's family on one contract.

A `Method` is five parts, each a plain function of the method's `Settings`:
- `model`: the Flax module (`models.py`, `family_models.py`);
- `corrupt`: the training input made from the clean batch (CeAE's erasure, the
  DAE's coarse noise; none for the others); the loss always sees the clean images;
- `loss`: each row's loss [B] and per-row terms to log, from the model outputs;
- `anomaly`: the anomaly map [B, H, W] (or none) and the image score [B], given
  a forward function of the trained model, so that gradient scores and
  GANomaly's test-time batch statistics fit the same call;
- `constants`: frozen train-state parts (the perceptual AE's VGG19 weights).
An optional `after_epoch` edits the state between epochs (GANomaly re-initialises
a collapsed discriminator). The trainer, evaluation, ensembles, checkpoints and
sharding know only this contract; `objective` adds the latent-entropy term to
every method with a latent code.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax import entropy, execution, family_models, image_losses, models
from ae4ad_jax.errors import UserError
from ae4ad_jax.kernels import Kernels

FOREGROUND_DATASETS = ("brain", "brats")  # the DAE adds noise to the foreground only there
CORRUPT_STREAM, MODEL_STREAM = 0, 1  # per-row random streams
GAN_COLLAPSE = 1e-5  # GANomaly re-initialises its discriminator below this epoch loss


# The methods' config groups with the reference's settings (configs/default.py uses these;
# a workdir saved before a group existed ran with these values).
CONFIG_DEFAULTS = {
    "vae": {"kl_weight": 0.005},
    "memae": {"slots": 25, "shrink_threshold": 0.0025, "entropy_weight": 0.0002},
    "ceae": {"erase_fraction": 0.024, "fill_value": -1.0},
    "ssim": {"window": 11, "sigma": 1.5},
    "perceptual": {"vgg_weights": ""},
    "ganomaly": {"adversarial_weight": 1.0, "reconstruction_weight": 50.0,
                 "encoding_weight": 1.0},
    "dae": {"noise_resolution": 16, "noise_std": 0.2, "depth": 5, "width_log2": 6},
}
# The learned rate's config group (`rate.py`; configs/default.py uses these; a workdir saved
# before the group existed ran without the rate).
RATE_DEFAULTS = {"enabled": False, "step": 0.5, "filters": (3, 3, 3), "init_scale": 10.0,
                 "learning_rate": 1e-2}
# Top-level config keys a method sets when it runs (`method_overrides`): the reference
# trains the DAE on 128x128 inputs in batches of 16.
OVERRIDE_DEFAULTS = {"dae": {"image_size": 128, "batch_size": 16}}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a method's parts read from the config (hashable: a static jit argument)."""

    channels: int = 1
    image_size: int = 64
    dataset: str = "phantom"
    base_width: int = 16
    expansion: int = 1
    hidden_width: int = 1024
    encoder_depth: int = 1
    decoder_depth: int = 1
    spatial: bool = False
    kernels: Kernels | None = None
    dtype: str = "float32"
    kl_weight: float = 0.005
    memory_slots: int = 25
    shrink_threshold: float = 0.0025
    memory_entropy_weight: float = 0.0002
    erase_fraction: float = 0.024
    erase_value: float = -1.0
    noise_resolution: int = 16
    noise_std: float = 0.2
    unet_depth: int = 5
    unet_width_log2: int = 6
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    vgg_weights: str = ""
    adversarial_weight: float = 1.0
    reconstruction_weight: float = 50.0
    encoding_weight: float = 1.0
    rate_step: float = 0.0  # 0: no quantisation, no learned rate
    rate_filters: tuple = (3, 3, 3)
    rate_init_scale: float = 10.0


def resolve_config(config):
    """The config a run of `config.method` uses: its `method_overrides` applied (a copy)."""
    overrides = dict(config.method_overrides.get(config.method, {}))
    if not overrides:
        return config
    resolved = config.copy_and_resolve_references()
    changed = []
    for key, value in overrides.items():
        if key not in resolved:
            raise UserError(f"Config key method_overrides.{config.method}.{key} names no "
                            "top-level config key.")
        if resolved[key] != value:
            changed.append(f"{key} {resolved[key]!r} -> {value!r}")
        resolved[key] = value
    if changed:
        from ae4ad_jax import run_outputs

        run_outputs.log(f"Method {config.method} runs with the reference's " + ", ".join(
            changed) + f" (config key method_overrides.{config.method}).")
    return resolved


def settings_from_config(config) -> Settings:
    m = config.model
    return Settings(
        channels=config.channels, image_size=config.image_size, dataset=config.dataset,
        base_width=m.base_width, expansion=m.expansion, hidden_width=m.hidden_width,
        encoder_depth=m.encoder_depth, decoder_depth=m.decoder_depth,
        spatial=bool(m.spatial), kernels=execution.model_kernels(config),
        dtype=m.compute_dtype, kl_weight=config.vae.kl_weight,
        memory_slots=config.memae.slots, shrink_threshold=config.memae.shrink_threshold,
        memory_entropy_weight=config.memae.entropy_weight,
        erase_fraction=config.ceae.erase_fraction, erase_value=config.ceae.fill_value,
        noise_resolution=config.dae.noise_resolution, noise_std=config.dae.noise_std,
        unet_depth=config.dae.depth, unet_width_log2=config.dae.width_log2,
        ssim_window=config.ssim.window, ssim_sigma=config.ssim.sigma,
        vgg_weights=config.perceptual.vgg_weights,
        adversarial_weight=config.ganomaly.adversarial_weight,
        reconstruction_weight=config.ganomaly.reconstruction_weight,
        encoding_weight=config.ganomaly.encoding_weight,
        rate_step=float(config.rate.step) if config.rate.enabled else 0.0,
        rate_filters=tuple(config.rate.filters), rate_init_scale=float(config.rate.init_scale))


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    model: Callable  # (settings, latent_size, axis_name) -> nn.Module
    loss: Callable  # (settings, outputs, images, latent_mask) -> (rows [B], {name: [B]})
    error_map: Callable | None = None  # (settings, outputs, images) -> [B, H, W]
    anomaly: Callable | None = None  # (method, forward, images, row_keys, latent_mask)
    corrupt: Callable | None = None  # (settings, images, batch) -> training input
    constants: Callable | None = None  # (settings) -> {collection: frozen variables}
    after_epoch: Callable | None = None  # (state, epoch means, key) -> state, one member
    has_latent: bool = True  # a code z: entropy estimates, latent sizes, the entropy term
    settings: Settings = Settings()

    def create_model(self, latent_size: int, axis_name=None):
        return self.model(self.settings, latent_size, axis_name)

    def frozen_variables(self) -> dict:
        return self.constants(self.settings) if self.constants else {}

    def score(self, forward, images, row_keys, latent_mask):
        """(map [B, H, W] or None, score [B], outputs) of the trained model."""
        return (self.anomaly or anomaly_from_map)(self, forward, images, row_keys, latent_mask)


# ----------------------------------------------------------------------------- batch context


@dataclasses.dataclass
class Batch:
    """This device's rows of a global batch, inside a train step: `weights` [B] (0 for
    padding), `key` the step's key (the same on every device), `row_keys` [B] keys of
    the rows' global positions, so per-row randomness does not depend on the split."""

    weights: jax.Array
    key: jax.Array
    row_keys: jax.Array
    latent_mask: jax.Array
    entropy_weight: jax.Array
    rate_weight: jax.Array
    axis_name: str | None = None

    def total(self, value):
        return value if self.axis_name is None else jax.lax.psum(value, self.axis_name)

    @property
    def count(self):
        return jnp.maximum(self.total(jnp.sum(self.weights)), 1.0)

    @property
    def shards(self):
        return self.total(1.0)

    def mean(self, values):
        """This device's share of the global weighted mean of per-row `values` [B]."""
        return jnp.sum(values * self.weights) / self.count

    def min(self, values):
        """The minimum of `values` [B, ...] over the real rows of the global batch."""
        rows = self.weights.reshape((-1,) + (1,) * (values.ndim - 1)) > 0
        local = jnp.min(jnp.where(rows, values, jnp.inf))
        return local if self.axis_name is None else jax.lax.pmin(local, self.axis_name)

    def keys(self, stream: int):
        return jax.vmap(jax.random.fold_in, (0, None))(self.row_keys, stream)


def row_keys(key, positions):
    """One key per row: `positions` [B] are the rows' places in the global batch."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, positions)


def objective(method, outputs, images, batch: Batch):
    """(this device's share of the loss, shares of logged terms, global logged terms)."""
    rows, aux = method.loss(method.settings, outputs, images, batch.latent_mask)
    reconstruction = batch.mean(rows)
    shares = {"reconstruction_loss": reconstruction,
              **{name: batch.mean(values) for name, values in aux.items()}}
    if not method.has_latent:
        return reconstruction, shares, {}
    share = reconstruction
    if "bits" in outputs:  # the rate: the encoder pays lambda per bit, the density fits
        shares["rate_bits"] = batch.mean(outputs["bits"])
        share = share + batch.mean(batch.rate_weight * outputs["bits"]
                                   + outputs["density_bits"])
    z, weights = outputs["z"], batch.weights
    if batch.axis_name is not None:  # every device computes the entropy of the whole batch
        z = jax.lax.all_gather(z, batch.axis_name, tiled=True)
        weights = jax.lax.all_gather(weights, batch.axis_name, tiled=True)
    latent_entropy = entropy.batch_renyi2(z, weights, batch.latent_mask)
    # Each device's copy of the entropy term sends gradients to every device's codes
    # (all_gather's transpose sums them), hence the 1 / shards.
    share = share + batch.entropy_weight * latent_entropy / batch.shards
    return share, shares, {"latent_entropy": latent_entropy}


# ----------------------------------------------------------------------------- per-row terms


def per_image_mse(recon, images):
    """Mean squared error of each image over pixels and channels: [B]."""
    return jnp.mean(jnp.square(recon - images), axis=(1, 2, 3))


def latent_mean(values, latent_mask):
    """Mean over each row's own latent units (an ensemble member's d, not max(d)): [B]."""
    mask = jnp.broadcast_to(latent_mask, values.shape[-1:])
    sums = jnp.sum(values * mask, axis=tuple(range(1, values.ndim)))
    return sums / (jnp.sum(mask) * np.prod(values.shape[1:-1]))


def gaussian_kl(mu, log_var):
    """KL(N(mu, exp(log_var)) || N(0, 1)) per latent unit."""
    return -0.5 * (1.0 + log_var - jnp.square(mu) - jnp.exp(log_var))


def attention_entropy(attention, epsilon=1e-12):
    """MemAE's entropy of each row's memory attention: [B]."""
    return -jnp.sum(attention * jnp.log(attention + epsilon), axis=-1)


def binary_cross_entropy(logits, target: float):
    """torch BCELoss of sigmoid(logits) (its logs clamped at -100), per row."""
    log_p = jnp.maximum(jax.nn.log_sigmoid(logits), -100.0)
    log_not_p = jnp.maximum(jax.nn.log_sigmoid(-logits), -100.0)
    return -(target * log_p + (1.0 - target) * log_not_p)


# ----------------------------------------------------------------------------- maps


def squared_error(s, outputs, images):
    """The reference's map: squared error averaged over channels, [B, H, W]."""
    return jnp.mean(jnp.square(outputs["recon"] - images), axis=-1)


def absolute_error(s, outputs, images):
    return jnp.mean(jnp.abs(outputs["recon"] - images), axis=-1)


def ssim_error(s, outputs, images):
    """1 - SSIM on [0, 1] images, resized from the valid windows to the input, [B, H, W]."""
    error = 1.0 - image_losses.ssim_map(image_losses.to_unit_range(images),
                                        image_losses.to_unit_range(outputs["recon"]),
                                        s.ssim_window, s.ssim_sigma)
    return jnp.mean(image_losses.resize_bilinear(error, *images.shape[1:3]), axis=-1)


def perceptual_error(s, outputs, images):
    error = image_losses.relative_l1(outputs["features_input"], outputs["features_recon"])
    return jnp.mean(image_losses.resize_bilinear(error, *images.shape[1:3]), axis=-1)


def uncertainty_error(s, outputs, images):
    """AE-U's map: squared error divided by the predicted variance, [B, H, W]."""
    error = jnp.square(outputs["recon"] - images) * jnp.exp(-outputs["log_var"])
    return jnp.mean(error, axis=-1)


# ----------------------------------------------------------------------------- losses


def map_loss(s, outputs, images, latent_mask, error_map):
    """The loss whose per-pixel form is the method's map (MSE, L1): each row's mean."""
    del latent_mask
    return jnp.mean(error_map(s, outputs, images), axis=(1, 2)), {}


def ssim_loss(s, outputs, images, latent_mask):
    del latent_mask
    error = 1.0 - image_losses.ssim_map(image_losses.to_unit_range(images),
                                        image_losses.to_unit_range(outputs["recon"]),
                                        s.ssim_window, s.ssim_sigma)
    return jnp.mean(error, axis=(1, 2, 3)), {}


def perceptual_loss(s, outputs, images, latent_mask):
    del images, latent_mask
    error = image_losses.relative_l1(outputs["features_input"], outputs["features_recon"])
    return jnp.mean(error, axis=(1, 2, 3)), {}


def vae_loss(s, outputs, images, latent_mask):
    mse = per_image_mse(outputs["recon"], images)
    kl = latent_mean(gaussian_kl(outputs["mu"], outputs["log_var"]), latent_mask)
    return mse + s.kl_weight * kl, {"mse": mse, "kl": kl}


def memae_loss(s, outputs, images, latent_mask):
    del latent_mask
    mse = per_image_mse(outputs["recon"], images)
    att_entropy = attention_entropy(outputs["att"])
    return mse + s.memory_entropy_weight * att_entropy, {"mse": mse,
                                                         "attention_entropy": att_entropy}


def constrained_loss(s, outputs, images, latent_mask):
    mse = per_image_mse(outputs["recon"], images)
    consistency = latent_mean(jnp.square(outputs["z"] - outputs["z_rec"]), latent_mask)
    return mse + consistency, {"mse": mse, "latent_consistency": consistency}


def uncertainty_loss(s, outputs, images, latent_mask):
    del latent_mask
    weighted = jnp.square(outputs["recon"] - images) * jnp.exp(-outputs["log_var"])
    rows = jnp.mean(weighted + outputs["log_var"], axis=(1, 2, 3))
    return rows, {"mse": per_image_mse(outputs["recon"], images),
                  "log_var": jnp.mean(outputs["log_var"], axis=(1, 2, 3))}


def ganomaly_loss(s, outputs, images, latent_mask):
    """The generator's loss plus the discriminator's; the model's stops make one gradient
    of the sum train each network on its own loss only."""
    adversarial = jnp.mean(jnp.square(outputs["features_real"] - outputs["features_fake"]), -1)
    mse = per_image_mse(outputs["recon"], images)
    encoding = latent_mean(jnp.square(outputs["z"] - outputs["z_hat"]), latent_mask)
    generator = (s.adversarial_weight * adversarial + s.reconstruction_weight * mse
                 + s.encoding_weight * encoding)
    discriminator = 0.5 * (binary_cross_entropy(outputs["logit_real"], 1.0)
                           + binary_cross_entropy(outputs["logit_fake"], 0.0))
    return generator + discriminator, {
        "generator_loss": generator, "discriminator_loss": discriminator,
        "adversarial_loss": adversarial, "mse": mse, "encoding_loss": encoding}


# ----------------------------------------------------------------------------- anomaly


def anomaly_from_map(method, forward, images, row_keys, latent_mask):
    outputs = forward(images, row_keys)
    maps = method.error_map(method.settings, outputs, images)
    return maps, jnp.mean(maps, axis=(1, 2)), outputs


def _input_gradient(forward, images, row_keys, term):
    """d (sum over rows of term(outputs, x)) / d x: each row's gradient of its own term
    (test-time BatchNorm uses running statistics, so rows do not interact)."""
    def total(x):
        outputs = forward(x, row_keys)
        return jnp.sum(term(outputs, x)), outputs

    return jax.grad(total, has_aux=True)(images)


def gradient_anomaly(method, forward, images, row_keys, latent_mask):
    """AE-Grad, VAE-Rec: |d MSE(x, f(x)) / dx|, averaged over channels."""
    grad, outputs = _input_gradient(forward, images, row_keys,
                                    lambda out, x: per_image_mse(out["recon"], x))
    maps = jnp.mean(jnp.abs(grad), axis=-1)
    return maps, jnp.mean(maps, axis=(1, 2)), outputs


def combined_gradient_anomaly(method, forward, images, row_keys, latent_mask):
    """VAE-Combi: the squared error times |d KL / dx|, averaged over channels."""
    grad, outputs = _input_gradient(
        forward, images, row_keys,
        lambda out, x: latent_mean(gaussian_kl(out["mu"], out["log_var"]), latent_mask))
    maps = jnp.mean(jnp.square(outputs["recon"] - images) * jnp.abs(grad), axis=-1)
    return maps, jnp.mean(maps, axis=(1, 2)), outputs


def latent_anomaly(method, forward, images, row_keys, latent_mask):
    """GANomaly: ||z - z_hat||^2 per image, no map. As the reference, every test image is
    passed alone in training mode (its BatchNorms use that image's statistics)."""
    def one(x, key):
        outputs = forward(x[None], key[None], train=True)
        return jax.tree_util.tree_map(lambda v: v[0], outputs)

    outputs = jax.vmap(one)(images, row_keys)
    scores = latent_mean(jnp.square(outputs["z"] - outputs["z_hat"]), latent_mask)
    return None, scores, outputs


# ----------------------------------------------------------------------------- corruption


def erase_square(s, images, batch: Batch):
    """CeAE: one square of `erase_fraction` of the image area per image, at a uniform
    position, set to `erase_value` (torchvision RandomErasing, scale and ratio fixed)."""
    _, height, width, _ = images.shape
    side = int(round(float(np.sqrt(s.erase_fraction * height * width))))

    def one(image, key):
        top_key, left_key = jax.random.split(key)
        top = jax.random.randint(top_key, (), 0, height - side + 1)
        left = jax.random.randint(left_key, (), 0, width - side + 1)
        rows = (jnp.arange(height) >= top) & (jnp.arange(height) < top + side)
        cols = (jnp.arange(width) >= left) & (jnp.arange(width) < left + side)
        inside = rows[:, None, None] & cols[None, :, None]
        return jnp.where(inside, s.erase_value, image)

    return jax.vmap(one)(images, batch.keys(CORRUPT_STREAM))


def coarse_noise(s, images, batch: Batch):
    """The DAE's noise: Gaussian noise (std `noise_std`) at `noise_resolution`^2 per image and
    channel, upsampled bilinearly (corners aligned), rolled by one random shift per batch,
    kept on the foreground (pixels above the batch minimum) for brain MRI, then shifted
    and scaled as the reference does: x + 2 * (noise - 0.5)."""
    b, height, width, channels = images.shape
    r = s.noise_resolution
    noise = jax.vmap(lambda key: jax.random.normal(key, (r, r, channels)))(
        batch.keys(CORRUPT_STREAM)) * s.noise_std
    noise = image_losses.resize_align_corners(noise, height, width)
    shift_rows, shift_cols = jax.random.randint(batch.key, (2,), 0, jnp.array([height, width]))
    noise = jnp.roll(noise, (shift_rows, shift_cols), axis=(1, 2))
    if s.dataset in FOREGROUND_DATASETS:
        noise = noise * (images > batch.min(images))
    return images + (noise - 0.5) * 2.0


# ----------------------------------------------------------------------------- models


def _autoencoder(s, latent_size, axis_name, **variant):
    return models.AutoEncoder(
        latent_size=latent_size, channels=s.channels, base_width=s.base_width,
        expansion=s.expansion, hidden_width=s.hidden_width, encoder_depth=s.encoder_depth,
        decoder_depth=s.decoder_depth, memory_slots=s.memory_slots,
        shrink_threshold=s.shrink_threshold, rate_step=s.rate_step,
        rate_filters=s.rate_filters, rate_init_scale=s.rate_init_scale,
        axis_name=axis_name, kernels=s.kernels,
        dtype=jnp.dtype(s.dtype), **{"spatial": s.spatial, **variant})


def _perceptual_model(s, latent_size, axis_name):
    return family_models.PerceptualAutoEncoder(_autoencoder(s, latent_size, axis_name))


def _ganomaly_model(s, latent_size, axis_name):
    return family_models.Ganomaly(
        latent_size=latent_size, channels=s.channels, image_size=s.image_size,
        base_width=s.base_width, expansion=s.expansion, hidden_width=s.hidden_width,
        encoder_depth=s.encoder_depth, decoder_depth=s.decoder_depth, axis_name=axis_name,
        kernels=s.kernels, dtype=jnp.dtype(s.dtype))


def _unet_model(s, latent_size, axis_name):
    del latent_size, axis_name  # no latent code; GroupNorm has no batch statistics
    return family_models.UNet(channels=s.channels, depth=s.unet_depth,
                              width_log2=s.unet_width_log2, dtype=jnp.dtype(s.dtype))


def load_vgg_weights(s) -> dict:
    """The perceptual AE's frozen VGG19 weights from `perceptual.vgg_weights` (.npz)."""
    from ae4ad_jax import vgg_weights

    return {family_models.VGG_COLLECTION: {family_models.VGG_MODULE: vgg_weights.load(
        s.vgg_weights)}}


def reinit_collapsed_discriminator(state, means, key):
    """GANomaly: when the discriminator's epoch loss fell below 1e-5, its conv kernels are
    redrawn from N(0, 0.02), BatchNorm scales from N(1, 0.02) and biases set to 0, as the
    reference's `reinit_d` (its linear layers keep their weights)."""
    collapsed = means["discriminator_loss"] < GAN_COLLAPSE
    leaves, tree = jax.tree_util.tree_flatten_with_path(state.params)
    keys = jax.random.split(key, len(leaves))
    new = []
    for (path, leaf), k in zip(leaves, keys, strict=True):
        names = [str(getattr(p, "key", "")) for p in path]
        fresh = leaf
        if names[0] == "discriminator" and any(n.startswith("Conv") and not
                                               n.startswith("ConvBlock") for n in names):
            fresh = 0.02 * jax.random.normal(k, leaf.shape)
        elif names[0] == "discriminator" and any(n.startswith("BatchNorm") for n in names):
            fresh = (1.0 + 0.02 * jax.random.normal(k, leaf.shape) if names[-1] == "scale"
                     else jnp.zeros_like(leaf))
        new.append(jnp.where(collapsed, fresh, leaf))
    return state.replace(params=jax.tree_util.tree_unflatten(tree, new))


def _ae(s, latent_size, axis_name):
    return _autoencoder(s, latent_size, axis_name)


def _variant(**variant):
    return lambda s, latent_size, axis_name: _autoencoder(s, latent_size, axis_name, **variant)


def _map_loss(error_map):
    return functools.partial(map_loss, error_map=error_map)


MSE = dict(loss=_map_loss(squared_error), error_map=squared_error)
FAMILY = {method.name: method for method in (
    Method("ae", _ae, **MSE),
    Method("ae-l1", _ae, _map_loss(absolute_error), absolute_error),
    Method("ae-ssim", _ae, ssim_loss, ssim_error),
    Method("ae-perceptual", _perceptual_model, perceptual_loss, perceptual_error,
           constants=load_vgg_weights),
    Method("ae-spatial", _variant(spatial=True), **MSE),
    Method("ae-grad", _ae, MSE["loss"], anomaly=gradient_anomaly),
    Method("vae", _variant(latent="gaussian"), vae_loss, squared_error),
    Method("vae-rec", _variant(latent="gaussian"), vae_loss, anomaly=gradient_anomaly),
    Method("vae-combi", _variant(latent="gaussian"), vae_loss,
           anomaly=combined_gradient_anomaly),
    Method("constrained-ae", _variant(reencode=True), constrained_loss, squared_error),
    Method("memae", _variant(latent="memory"), memae_loss, squared_error),
    Method("ceae", _ae, **MSE, corrupt=erase_square),
    Method("aeu", _variant(log_variance=True), uncertainty_loss, uncertainty_error),
    Method("ganomaly", _ganomaly_model, ganomaly_loss, anomaly=latent_anomaly,
           after_epoch=reinit_collapsed_discriminator),
    Method("dae", _unet_model, **MSE, corrupt=coarse_noise, has_latent=False),
)}
NAMES = tuple(FAMILY)
TABLE2 = ("ae", "vae", "memae", "ceae")  # the paper's Table 2
# The methods whose code can be quantised with a learned rate (`rate.enabled`): the AE
# and the variants that keep its plain latent code.
RATE_METHODS = ("ae", "ae-l1", "ae-ssim", "ae-perceptual", "ae-spatial", "ae-grad",
                "constrained-ae", "ceae", "aeu")


@functools.lru_cache(maxsize=64)
def _bound(name: str, settings: Settings) -> Method:
    return dataclasses.replace(FAMILY[name], settings=settings)


def create(config) -> Method:
    """The configured method with its settings (one object per settings: compiled once)."""
    if config.method not in FAMILY:
        raise UserError(f"Unknown method {config.method!r}: known methods are "
                        f"{', '.join(FAMILY)}.")
    return _bound(config.method, settings_from_config(config))
