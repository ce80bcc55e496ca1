"""The paper's AE on RSNA (chest X-ray), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/rsna.py --workdir=runs/rsna

250 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "rsna"
    config.num_epochs = 250
    return config
