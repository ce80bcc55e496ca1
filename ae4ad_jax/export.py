"""Exports one member of an ensemble workdir as a standalone model's workdir.

    python -m ae4ad_jax.export --workdir=runs/table1_brats --member=5 --out=runs/brats_d4_s2
    python -m ae4ad_jax.main --workdir=runs/brats_d4_s2 --eval_only

The exported checkpoint holds the member's whole train state cut to its own
latent size (Adam moments included), and `config.json` is the standalone
config (its `latent_size` and `seed`, no ensemble axes), so it evaluates,
or resumes training, exactly as a run of that single model.
"""

import json

from absl import app, flags

from ae4ad_jax import checkpointing, cpu_kernels, ensemble, methods, run_outputs, train
from ae4ad_jax.errors import UserError, exit_on_user_error


def restore_member(workdir: str, index: int):
    """(config, method, members, restored ensemble state, its epoch) of a finished run,
    with member `index` checked to exist."""
    config = methods.resolve_config(run_outputs.load_saved_config(workdir))
    members = ensemble.members_from_config(config)
    if not 0 <= index < len(members):
        raise UserError(f"Member {index} does not exist: {workdir} has members 0 to "
                        f"{len(members) - 1}.")
    method = methods.create(config)
    state = train.create_train_state(config, method, members)
    state, epoch = checkpointing.restore_or_keep(
        checkpointing.create_manager(workdir), state, workdir)
    if epoch == 0:
        raise UserError(f"{workdir}/checkpoints holds no checkpoint to export.")
    return config, method, members, state, epoch


def export_member(workdir: str, index: int, out_dir: str) -> dict:
    """Writes `out_dir` (config.json, checkpoints/EPOCH); returns the member."""
    config, method, members, state, epoch = restore_member(workdir, index)
    member = members[index]
    standalone = config.copy_and_resolve_references()
    standalone.latent_size, standalone.seed = member["latent_size"], member["seed"]
    standalone.latent_sizes, standalone.seeds = (), ()
    standalone.entropy_weight = member.get("entropy_weight", 0.0)
    standalone.rate_weight = member.get("rate_weight", 0.0)
    standalone.entropy_weights, standalone.rate_weights = (), ()
    target = train.create_train_state(standalone, method, [member])
    chosen = ensemble.member(state, index, keep_axis=True)
    size = member["latent_size"]
    exported = target.replace(
        step=chosen.step, rng=chosen.rng,
        batch_stats=ensemble.resize_latent(chosen.batch_stats, size),
        params=ensemble.resize_latent(chosen.params, size),
        opt_state=ensemble.resize_latent(chosen.opt_state, size))
    run_outputs.prepare_workdir(out_dir, standalone)
    manager = checkpointing.create_manager(out_dir)
    checkpointing.save(manager, epoch, exported)
    manager.wait_until_finished()
    return {**member, "epoch": epoch}


FLAGS = flags.FLAGS


def main(argv):
    del argv
    cpu_kernels.apply_xla_cpu_flags()
    run_outputs.quiet_library_logs()
    exported = exit_on_user_error(export_member, FLAGS.workdir, FLAGS.member, FLAGS.out)
    print(json.dumps(exported))


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "Workdir of an ensemble run.")
    flags.DEFINE_integer("member", None, "Index of the member (row 'member' in metrics).")
    flags.DEFINE_string("out", None, "Workdir to create for the standalone model.")
    flags.mark_flags_as_required(["workdir", "member", "out"])
    app.run(main)
