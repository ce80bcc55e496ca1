"""The paper's AE on Brain Tumor (brain MRI), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/brain.py --workdir=runs/brain

600 epochs, evaluated after epoch 1, every 25 epochs and at the end.
"""

from configs import default


def get_config():
    config = default.get_config()
    config.dataset = "brain"
    config.num_epochs = 600
    return config
