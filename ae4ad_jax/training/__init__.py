"""Training: the train state (`state.py`), the pure steps and epochs (`step.py`), the driver
of a run (`loop.py`), method comparisons (`comparison.py`), and exporting one member as a
standalone run (`export.py`).

May import: core, nets, estimators, data, parallel, methods, config, evaluation, runs,
reporting.
"""
