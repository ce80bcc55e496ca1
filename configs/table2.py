"""The paper's Table 2 (AE, VAE, MemAE, CeAE at d = 16, three seeds; AE[d_opt] from Table 1)
on a real dataset, named after the colon: rsna, vin, brain, lag, isic, c16 or brats.

    python -m ae4ad_jax.main --config=configs/table1_brats.py --workdir=runs/table1_brats
    python -m ae4ad_jax.main --config=configs/table2.py:brats --workdir=runs/table2_brats

For the whole benchmark family (the DAE at 128x128, batch 16, as the reference; the
perceptual AE with the VGG19 weights file):

    python -m ae4ad_jax.main --config=configs/table2.py:brats,family \\
        --config.perceptual.vgg_weights=vgg19.npz --workdir=runs/family_brats
"""

import importlib

from ae4ad_jax.methods import NAMES, TABLE2
from configs.default import PAPER_SEEDS


def get_config(arg="brats"):
    dataset, _, scope = arg.partition(",")
    config = importlib.import_module(f"configs.{dataset}").get_config()
    config.methods = NAMES if scope == "family" else TABLE2
    config.seeds = PAPER_SEEDS
    config.latent_size = 16
    config.table1_workdir = f"runs/table1_{dataset}"
    return config
