"""A learned rate of the latent code in bits: quantisation and a factorised density.

As in learned image compression (Balle et al. 2017; the density of Balle et al.
2018, appendix 6.1): the normalised code, in units of the quantisation step, is
perturbed by uniform noise of width one step in training and rounded at
evaluation; each latent unit has its own learned density, the derivative of a
monotone CDF network c(x) = sigmoid(f_K(... f_1(x))), where every f_k is a
positive-weight linear map followed (but the last) by x + tanh(a) tanh(x). The
probability of a quantised value q is c(q + 1/2) - c(q - 1/2), so the rate
-log2 p(q) summed over units is the code length of the quantised code in bits
under the learned density: an upper bound on its entropy, tight when the density
fits. Training with noise makes that probability the density of the noisy code,
which is what lets the encoder's gradient see it.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ae4ad_jax.core.settings import setting

LIKELIHOOD_FLOOR = 1e-9  # probabilities below this cost log2(1e9) ~ 30 bits


@dataclasses.dataclass(frozen=True)
class Rate:
    """The learned rate (config group `rate`). With `enabled`, the decoder reads the latent
    code standardised per unit and quantised with `step`, and every evaluation reports the
    code's rate in bits per image under the learned density."""

    enabled: bool = setting(False, "quantise the code and learn its rate")
    step: float = setting(0.5, "quantisation step, in standard deviations", low=1e-6)
    filters: tuple = setting((3, 3, 3), "hidden widths of the density's CDF network", low=1)
    init_scale: float = setting(10.0, "initial spread of each unit's density", low=1e-6)
    learning_rate: float = setting(1e-2, "the density's own Adam learning rate", low=1e-12)


def uniform_noise(row_keys, shape):
    """U(-1/2, 1/2) noise [B, *shape]: latent unit j of row b (the last axis) from key
    (row_keys[b], j), so it depends neither on the batch nor on the ensemble's width."""
    units, per_unit = shape[-1], shape[:-1]

    def row(key):
        noise = jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(key, j), per_unit,
                                                      minval=-0.5, maxval=0.5))(
            jnp.arange(units))  # [units, *per_unit]
        return jnp.moveaxis(noise, 0, -1)

    return jax.vmap(row)(row_keys)


def quantise(y, train: bool, row_keys=None):
    """`y` [B, ..., d] in steps: y + U(-1/2, 1/2) in training, round(y) at evaluation (with
    the identity's gradient, so gradient scores still reach the encoder)."""
    if train:
        if row_keys is None:
            raise ValueError("Training-mode quantisation draws noise: pass row_keys.")
        return y + uniform_noise(row_keys, y.shape[1:]).astype(y.dtype)
    return y + lax.stop_gradient(jnp.round(y) - y)


def _centred_uniform(rng, shape, dtype=jnp.float32):
    return jax.random.uniform(rng, shape, dtype, -0.5, 0.5)


class FactorizedDensity(nn.Module):
    """One learned density per latent unit; returns -log2 p(q) of quantised values `q`
    [..., d] (in steps), elementwise. Every parameter's last axis is the unit. With
    `stop_params` the density is fixed (the encoder's gradient); without it, gradients
    reach only the density when the caller stops `q`."""

    filters: tuple
    init_scale: float

    def _parameters(self, units):
        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(widths) - 1))
        layers = []
        for k in range(len(widths) - 1):
            fan_out, fan_in = widths[k + 1], widths[k]
            start = math.log(math.expm1(1.0 / scale / fan_out))
            matrix = self.param(f"matrix_{k}", nn.initializers.constant(start),
                                (fan_out, fan_in, units))
            bias = self.param(f"bias_{k}", _centred_uniform, (fan_out, units))
            factor = (self.param(f"factor_{k}", nn.initializers.zeros, (fan_out, units))
                      if k < len(widths) - 2 else None)
            layers.append((matrix, bias, factor))
        return layers

    def _logits(self, layers, x):
        h = x[..., None, :]  # [..., 1, d]
        for matrix, bias, factor in layers:
            h = jnp.einsum("oiu,...iu->...ou", jax.nn.softplus(matrix), h) + bias
            if factor is not None:
                h = h + jnp.tanh(factor) * jnp.tanh(h)
        return h[..., 0, :]

    @nn.compact
    def __call__(self, q, stop_params: bool = False):
        layers = self._parameters(q.shape[-1])
        if stop_params:
            layers = lax.stop_gradient(layers)
        q = q.astype(jnp.float32)
        lower, upper = self._logits(layers, q - 0.5), self._logits(layers, q + 0.5)
        # Far in a tail both sigmoids round to 1 or to 0; flipping the sign keeps the
        # difference where float32 resolves it.
        sign = lax.stop_gradient(-jnp.sign(lower + upper))
        probability = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        return -jnp.log2(jnp.maximum(probability, LIKELIHOOD_FLOOR))
