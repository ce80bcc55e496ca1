"""The paper's AE on VinDr-CXR (chest X-ray), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/vin.py --workdir=runs/vin

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "vin"
    config.num_epochs = 250
    return config
