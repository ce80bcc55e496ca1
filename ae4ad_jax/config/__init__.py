"""A run's config: the checks of its keys and of the data it names (`checks.py`), run
before any compute by training and on every config read back from a workdir.

May import: core, nets, estimators, data, parallel, methods, runs.
Libraries: none.
"""
