"""Command line: export a trained member's scoring function with `jax.export` (StableHLO).

    python -m ae4ad_jax.scorer --workdir=runs/default --member=0 --out=scorer.bin

What the artefact takes and gives, and how to load it: `serving/exported.py`.
"""

from absl import app, flags

from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.serving.exported import export_scorer


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    f = flags.FLAGS
    print(exit_on_user_error(export_scorer, f.workdir, f.member, f.out))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of a finished run.")
    flags.DEFINE_integer("member", 0, "Index of the member (row 'member' in metrics).")
    flags.DEFINE_string("out", None, "File to write the serialised scorer to.")
    flags.mark_flags_as_required(["workdir", "out"])
    app.run(main)
