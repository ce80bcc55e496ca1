"""The paper's AE on ISIC2018 task 3 (dermoscopy), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/isic.py --workdir=runs/isic

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "isic"
    config.num_epochs = 250
    return config
