"""The paper's AE on BraTS2021 (brain MRI, FLAIR; pixel masks), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/brats.py --workdir=runs/brats

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "brats"
    config.num_epochs = 250
    return config
