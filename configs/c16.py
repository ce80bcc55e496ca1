"""The paper's AE on Camelyon16 (histopathology, RGB), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/c16.py --workdir=runs/c16

The short form of `configs/benchmark.py:c16`; its Table 1 and Table 2 are
`benchmark.py:c16,table1` and `benchmark.py:c16,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("c16")
