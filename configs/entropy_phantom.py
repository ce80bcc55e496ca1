"""Entropy-controlled training on `phantom`: a large latent (d = 256) with the
latent-entropy weight lambda swept as an ensemble axis, on the data and schedule
of configs/table1_phantom.py so the two tables compare.

    python -m ae4ad_jax.main --config=configs/entropy_phantom.py --workdir=runs/entropy_phantom
"""

from configs import table1_phantom


def get_config():
    config = table1_phantom.get_config()
    config.latent_sizes = (256,)
    config.seeds = (0,)
    config.entropy_weights = (0.0, 0.01, 0.1, 1.0)
    return config
