"""The paper's Table 2 on RSNA: AE, VAE, MemAE, CeAE at d = 16, three seeds each, and
AE[d_opt] from the Table 1 run (configs/table1_rsna.py, run first).

    python -m ae4ad_jax.main --config=configs/table2_rsna.py --workdir=runs/table2_rsna

Every method of the benchmark family: --config=configs/table2.py:rsna,family.
"""

from configs import table2


def get_config():
    return table2.get_config("rsna")
