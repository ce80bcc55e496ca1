"""Shared basics every layer may use: the user-error type (`errors.py`), progress lines
(`progress.py`), logging (`logs.py`), batch arithmetic (`batching.py`), atomic file writes
(`files.py`), declared settings (`settings.py`), the processes of a run: the writer, a
shared text, waiting for each other (`hosts.py`), pytree path names (`trees.py`), and the
datasets' facts (`datasets.py`).

May import: nothing from the package.
Libraries: absl, jax, numpy, pydicom, tensorflow_datasets, tqdm (logs.py quiets the
loggers of absl, pydicom and TFDS).
"""
