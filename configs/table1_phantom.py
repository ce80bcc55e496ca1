"""A quick Table 1 on `phantom`: five latent sizes x two seeds, about 10 minutes on 2 CPU cores.

    python -m ae4ad_jax.main --config=configs/table1_phantom.py --workdir=runs/table1_phantom

Fewer training images and epochs than the default config, so the whole curve
(AUROC and reconstruction error against d) appears in minutes.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.latent_sizes = (1, 4, 16, 64, 256)
    config.seeds = (0, 1)
    config.num_epochs = 10
    config.eval_every_epochs = 10
    config.phantom.num_train = 1500
    return config
