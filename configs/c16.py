"""The paper's AE on Camelyon16 (histopathology, RGB), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/c16.py --workdir=runs/c16

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "c16"
    config.channels = 3
    config.num_epochs = 250
    return config
