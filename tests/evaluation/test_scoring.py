"""Scoring a few examples (the report's examples.png) gives what the evaluation scored."""

import numpy as np

from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import ensemble, execution
from ae4ad_jax.training import state as state_lib


def test_examples_get_the_scores_and_maps_of_the_evaluation(test_config):
    """The VAE samples z at test time: an example must draw what the evaluation drew for
    that image, whatever images are scored beside it."""
    test_config.method = "vae"
    method = registry.create(test_config)
    weights = scoring.scoring_weights(state_lib.create_train_state(
        test_config, method, [{"latent_size": 4, "seed": 0}]))
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 1), np.uint8)
    scored = scoring.score_members(weights, images, batch_size=16, method=method,
                                   plan=execution.plan_execution(test_config), with_maps=True)
    indices = np.array([3, 17, 33])
    example = scoring.score_examples(ensemble.take(weights, 0), images[indices], indices,
                                     method=method)
    np.testing.assert_allclose(example["score"], scored["score"][0, indices], rtol=1e-5)
    np.testing.assert_allclose(example["map"], scored["map"][0, indices], atol=1e-5)
    assert example["recon"].shape == (3, 32, 32, 1)
