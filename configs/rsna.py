"""The paper's AE on RSNA (chest X-ray), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/rsna.py --workdir=runs/rsna

The short form of `configs/benchmark.py:rsna`; its Table 1 and Table 2 are
`benchmark.py:rsna,table1` and `benchmark.py:rsna,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("rsna")
