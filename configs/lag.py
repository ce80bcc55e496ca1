"""The paper's AE on LAG (retinal fundus), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/lag.py --workdir=runs/lag

The short form of `configs/benchmark.py:lag`; its Table 1 and Table 2 are
`benchmark.py:lag,table1` and `benchmark.py:lag,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("lag")
