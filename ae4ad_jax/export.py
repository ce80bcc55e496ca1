"""Command line: one member of a finished run, written out in a form that leaves the run.

    python -m ae4ad_jax.export --workdir=runs/table1_brats --member=5 --out=runs/brats_d4_s2
    python -m ae4ad_jax.export --workdir=runs/default --format=stablehlo --out=ae.stablehlo
    python -m ae4ad_jax.export --workdir=runs/default --format=onnx --out=ae.onnx

`--format=workdir` (the default): a standalone model's workdir, which `main
--eval_only`, `score` and `AnomalyDetector.load` read; `--format=stablehlo`: its
scoring function as a `jax.export` file; `--format=onnx`: the same function as an
ONNX model for runtimes without JAX. What each holds: `training/export.py`.
"""

import json

from absl import app, flags

from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.training import export


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    f = flags.FLAGS
    print(json.dumps(exit_on_user_error(export.export, f.workdir, f.member, f.out, f.format)))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of a finished run.")
    flags.DEFINE_integer("member", 0, "Index of the member (row 'member' in metrics).")
    flags.DEFINE_enum("format", "workdir", list(export.FORMATS), "The form to write.")
    flags.DEFINE_string("out", None, "Workdir (format workdir) or file to write.")
    flags.mark_flags_as_required(["workdir", "out"])
    app.run(main)
