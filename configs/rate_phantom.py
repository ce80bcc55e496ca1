"""Rate-distortion training on `phantom`: a large latent (d = 64) whose quantised code
pays lambda per bit, lambda swept as an ensemble axis over three seeds, on the data and
schedule of configs/table1_phantom.py (10% of the normal training images held out for
the label-free choice of lambda).

    python -m ae4ad_jax.main --config=configs/rate_phantom.py --workdir=runs/rate_phantom
"""

from configs import table1_phantom


def get_config():
    config = table1_phantom.get_config()
    config.latent_sizes = (64,)
    config.seeds = (0, 1, 2)
    config.val_fraction = 0.1
    config.rate.enabled = True
    config.rate_weights = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
    return config
