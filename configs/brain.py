"""The paper's AE on Brain Tumor (brain MRI), with the reference protocol.

    python -m ae4ad_jax.main --config=configs/brain.py --workdir=runs/brain

The short form of `configs/benchmark.py:brain`; its Table 1 and Table 2 are
`benchmark.py:brain,table1` and `benchmark.py:brain,table2` (see benchmark.py).
"""

from configs import benchmark


def get_config():
    return benchmark.get_config("brain")
