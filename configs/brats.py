"""The paper's AE on BraTS2021 (brain MRI, FLAIR; pixel masks), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/brats.py --workdir=runs/brats

The short form of `configs/benchmark.py:brats`; its Table 1 and Table 2 are
`benchmark.py:brats,table1` and `benchmark.py:brats,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("brats")
