"""The paper's Table 1 on BraTS2021: d = 1..128, three seeds, 24 members trained together.

    python -m ae4ad_jax.main --config=configs/table1_brats.py --workdir=runs/table1_brats

The report (WORKDIR/report/: table1.md, table1.csv, error_vs_d.png,
auroc_vs_d.png) is written at the end; `python -m ae4ad_jax.report` rebuilds it.
"""

from configs import brats
from configs.default import PAPER_LATENT_SIZES, PAPER_SEEDS


def get_config():
    config = brats.get_config()
    config.latent_sizes, config.seeds = PAPER_LATENT_SIZES, PAPER_SEEDS
    return config
