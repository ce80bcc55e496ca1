"""`ganomaly`: a generator (encoder, decoder, encoder) and a discriminator trained together;
the score is ||z - E2(x_hat)||^2 per image (no map)."""

import dataclasses

import jax
import jax.numpy as jnp

from ae4ad_jax.core import trees
from ae4ad_jax.core.settings import setting
from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method
from ae4ad_jax.nets.ganomaly import Ganomaly

COLLAPSE = 1e-5  # the discriminator is re-initialised below this epoch loss


@dataclasses.dataclass(frozen=True)
class Settings:
    """Config group `ganomaly`: the generator's loss weights, at the reference's values."""

    adversarial_weight: float = setting(1.0, "weight of the feature-matching term", low=0.0)
    reconstruction_weight: float = setting(50.0, "weight of the MSE", low=0.0)
    encoding_weight: float = setting(1.0, "weight of ||z - E2(x_hat)||^2", low=0.0)


def _model(method, latent_size, axis_name):
    c = method.common
    return Ganomaly(latent_size=latent_size, channels=c.channels, image_size=c.image_size,
                    architecture=c.architecture, axis_name=axis_name, kernels=c.kernels)


def binary_cross_entropy(logits, target: float):
    """torch BCELoss of sigmoid(logits) (its logs clamped at -100), per row."""
    log_p = jnp.maximum(jax.nn.log_sigmoid(logits), -100.0)
    log_not_p = jnp.maximum(jax.nn.log_sigmoid(-logits), -100.0)
    return -(target * log_p + (1.0 - target) * log_not_p)


def ganomaly_loss(method, outputs, images, latent_mask):
    """The generator's loss plus the discriminator's; the model's stops make one gradient
    of the sum train each network on its own loss only."""
    s = method.settings
    adversarial = jnp.mean(jnp.square(outputs["features_real"] - outputs["features_fake"]), -1)
    mse = parts.per_image_mse(outputs["recon"], images)
    encoding = parts.latent_mean(jnp.square(outputs["z"] - outputs["z_hat"]), latent_mask)
    generator = (s.adversarial_weight * adversarial + s.reconstruction_weight * mse
                 + s.encoding_weight * encoding)
    discriminator = 0.5 * (binary_cross_entropy(outputs["logit_real"], 1.0)
                           + binary_cross_entropy(outputs["logit_fake"], 0.0))
    return generator + discriminator, {
        "generator_loss": generator, "discriminator_loss": discriminator,
        "adversarial_loss": adversarial, "mse": mse, "encoding_loss": encoding}


def latent_anomaly(method, forward, images, row_keys, latent_mask):
    """||z - z_hat||^2 per image, no map. As the reference, every test image is passed
    alone in training mode (its BatchNorms use that image's statistics)."""
    def one(x, key):
        outputs = forward(x[None], key[None], train=True)
        return jax.tree_util.tree_map(lambda v: v[0], outputs)

    if images.shape[0] == 1:  # one image already (as the ONNX export passes them)
        outputs = forward(images, row_keys, train=True)
    else:
        outputs = jax.vmap(one)(images, row_keys)
    scores = parts.latent_mean(jnp.square(outputs["z"] - outputs["z_hat"]), latent_mask)
    return None, scores, outputs


def reinit_collapsed_discriminator(state, means, key):
    """When the discriminator's epoch loss fell below COLLAPSE, its conv kernels are
    redrawn from N(0, 0.02), BatchNorm scales from N(1, 0.02) and biases set to 0, as the
    reference's `reinit_d` (its linear layers keep their weights)."""
    collapsed = means["discriminator_loss"] < COLLAPSE
    leaves, tree = jax.tree_util.tree_flatten_with_path(state.params)
    keys = jax.random.split(key, len(leaves))
    new = []
    for (path, leaf), k in zip(leaves, keys, strict=True):
        names = trees.path_names(path)
        fresh = leaf
        if names[0] == "discriminator" and any(n.startswith("Conv") and not
                                               n.startswith("ConvBlock") for n in names):
            fresh = 0.02 * jax.random.normal(k, leaf.shape)
        elif names[0] == "discriminator" and any(n.startswith("BatchNorm") for n in names):
            fresh = (1.0 + 0.02 * jax.random.normal(k, leaf.shape) if names[-1] == "scale"
                     else jnp.zeros_like(leaf))
        new.append(jnp.where(collapsed, fresh, leaf))
    return state.replace(params=jax.tree_util.tree_unflatten(tree, new))


METHODS = (Method("ganomaly", model=_model, loss=ganomaly_loss,
                              anomaly=latent_anomaly, after_epoch=reinit_collapsed_discriminator,
                              per_image=True, group="ganomaly", settings_type=Settings),)
