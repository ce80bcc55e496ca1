"""The paper's AE and the variants that change only its loss, score or code's form:
`ae` (MSE), `ae-l1` (L1), `ae-spatial` (a 4x4xd code of 1x1 convs), `ae-grad` (the
gradient of the MSE with respect to the input as the score)."""

import functools

import jax.numpy as jnp

from ae4ad_jax.methods import parts
from ae4ad_jax.methods.contract import Method


def absolute_error(method, outputs, images):
    return jnp.mean(jnp.abs(outputs["recon"] - images), axis=-1)


AE = dict(model=parts.autoencoder, plain_code=True)
METHODS = (
    Method("ae", loss=parts.mse_loss, error_map=parts.squared_error, **AE),
    Method("ae-l1", loss=functools.partial(parts.map_loss, error_map=absolute_error),
           error_map=absolute_error, **AE),
    Method("ae-spatial", model=functools.partial(parts.autoencoder, spatial=True),
           loss=parts.mse_loss, error_map=parts.squared_error, plain_code=True),
    Method("ae-grad", loss=parts.mse_loss, anomaly=parts.gradient_anomaly, **AE),
)
