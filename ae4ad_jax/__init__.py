"""ae4ad-jax: reconstruction-based anomaly detection for medical images in JAX.

Subpackages, from the ground up; each imports only those listed before it (its
`__init__` says which; tests/test_layering.py holds the rule):

- `core/`: errors, logs, progress, batch arithmetic, atomic files, declared settings;
- `nets/`: Flax modules; `estimators/`: entropy estimators; `data/`: datasets and the
  shared image preprocessing;
- `parallel/`: ensemble axes, device mesh, many processes, the execution plan;
- `methods/`: the method contract, one module per method, the registry;
- `evaluation/`: scoring on the device, metrics on the host;
- `runs/`: a workdir's files and checkpoints;
- `reporting/`: tables, figures, the report page;
- `serving/`: a trained detector, scoring files, the StableHLO and ONNX exports;
- `training/`: state, steps, the driver, a member's export;
- entry points: `main` (train, evaluate), `report`, `export` (a member out of its run,
  as a workdir, StableHLO or ONNX), `score` (image files) and `api` (AnomalyDetector,
  a scikit-learn estimator).

Importing the package changes no process-wide setting. The command-line entry
points call `nets.cpu_kernels.apply_xla_cpu_flags()` before JAX starts; a library
user who wants the same on CPU calls it before the first JAX computation.
"""

__version__ = "0.1.0"
