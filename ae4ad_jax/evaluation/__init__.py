"""Evaluation: scoring under jit on any layout (`scoring.py`), metrics on the host
(`metrics.py`), the latent code's entropy and rate (`codes.py`), the scores of the code
(`code_scores.py`), and the evaluator that
turns a run's members into metrics rows (`evaluator.py`).

May import: core, nets, estimators, data, parallel, methods.
Libraries: jax, numpy, sklearn.
"""
