"""Reports of finished runs: the tables (`tables.py`), the figures (`figures.py`), the
report page (`page.py`), the claim's table and figure (`claim.py`), and the report of one
or many workdirs (`build.py`).

May import: core, estimators, data, parallel, methods, evaluation, runs.
Libraries: matplotlib, numpy, PIL, scipy, sklearn.
"""
