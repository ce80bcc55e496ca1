"""Serving a trained member: the detector that restores parameters and statistics only
(`detector.py`), scoring files into CSVs, maps and overlays (`files.py`), and the
member's scoring function exported with `jax.export` (`stablehlo.py`) and as an ONNX
model (`onnx_export.py`). Serving never builds the trainer, the optimiser state or the
report.

May import: core, nets, data, parallel, methods, config, evaluation, runs.
Libraries: jax, jax2onnx, matplotlib, numpy, PIL.
"""
