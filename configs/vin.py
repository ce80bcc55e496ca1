"""The paper's AE on VinDr-CXR (chest X-ray), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/vin.py --workdir=runs/vin

The short form of `configs/benchmark.py:vin`; its Table 1 and Table 2 are
`benchmark.py:vin,table1` and `benchmark.py:vin,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("vin")
