"""The paper's AE on ISIC2018 task 3 (dermoscopy), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/isic.py --workdir=runs/isic

The short form of `configs/benchmark.py:isic`; its Table 1 and Table 2 are
`benchmark.py:isic,table1` and `benchmark.py:isic,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("isic")
