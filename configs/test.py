"""A tiny config for tests: 32x32 phantom, narrow AE, five epochs (seconds on CPU).

    python -m ae4ad_jax.main --config=configs/test.py --workdir=/tmp/ae4ad_test

Evaluated after epoch 1 (always) and at the end; entropies without bootstrap
intervals (the tests about intervals set `entropy_bootstrap`).
"""

from configs import default


def get_config():
    config = default.get_config()
    config.image_size = 32
    config.channels = 1  # phantom's, set here: tests build models without a run's resolution
    config.num_epochs = 5
    config.batch_size = 32
    config.eval_every_epochs = 5
    config.checkpoint_every_epochs = 1
    config.entropy_bootstrap = 0
    config.model.base_width = 8
    config.model.hidden_width = 64
    config.eval.batch_size = 64
    config.phantom.num_train = 256
    config.phantom.num_test_normal = 100
    config.phantom.num_test_abnormal = 100
    return config
