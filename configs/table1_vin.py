"""The paper's Table 1 on VinDr-CXR: d = 1..128, three seeds, 24 members trained together.

    python -m ae4ad_jax.main --config=configs/table1_vin.py --workdir=runs/table1_vin

The report (WORKDIR/report/: table1.md, table1.csv, error_vs_d.png,
auroc_vs_d.png) is written at the end; `python -m ae4ad_jax.report` rebuilds it.
"""

from configs import vin
from configs.default import PAPER_LATENT_SIZES, PAPER_SEEDS


def get_config():
    config = vin.get_config()
    config.latent_sizes, config.seeds = PAPER_LATENT_SIZES, PAPER_SEEDS
    return config
