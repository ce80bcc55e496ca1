"""The paper's AE on LAG (retinal fundus), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/lag.py --workdir=runs/lag

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "lag"
    config.num_epochs = 250
    return config
