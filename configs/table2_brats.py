"""The paper's Table 2 on BraTS2021: AE, VAE, MemAE, CeAE at d = 16, three seeds each, and
AE[d_opt] from the Table 1 run (configs/table1_brats.py, run first).

    python -m ae4ad_jax.main --config=configs/table2_brats.py --workdir=runs/table2_brats

Every method of the benchmark family: --config=configs/table2.py:brats,family.
"""

from configs import table2


def get_config():
    return table2.get_config("brats")
