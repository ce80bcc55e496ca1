"""Command line: export one member of an ensemble workdir as a standalone model's workdir.

    python -m ae4ad_jax.export --workdir=runs/table1_brats --member=5 --out=runs/brats_d4_s2
    python -m ae4ad_jax.main --workdir=runs/brats_d4_s2 --eval_only
"""

import json

from absl import app, flags

from ae4ad_jax.core.errors import exit_on_user_error
from ae4ad_jax.core.logs import quiet_library_logs
from ae4ad_jax.nets import cpu_kernels
from ae4ad_jax.training.export import export_member


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    quiet_library_logs()
    f = flags.FLAGS
    print(json.dumps(exit_on_user_error(export_member, f.workdir, f.member, f.out)))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of an ensemble run.")
    flags.DEFINE_integer("member", None, "Index of the member (row 'member' in metrics).")
    flags.DEFINE_string("out", None, "Workdir to create for the standalone model.")
    flags.mark_flags_as_required(["workdir", "member", "out"])
    app.run(main)
