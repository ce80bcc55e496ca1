"""One member of an ensemble workdir as a standalone model's workdir
(`python -m ae4ad_jax.export`).

The exported checkpoint holds the member's whole train state cut to its own
latent size (Adam moments included), and `config.json` is the standalone
config (its `latent_size` and `seed`, no ensemble axes), so it evaluates,
or resumes training, exactly as a run of that single model.
"""

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import ensemble
from ae4ad_jax.runs import checkpoints
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.training.state import create_train_state


def restore_member(workdir: str, index: int):
    """(config, method, members, restored ensemble state, its epoch) of a finished run,
    with member `index` checked to exist."""
    config = registry.resolve_config(workdir_lib.load_saved_config(workdir))
    members = ensemble.members_from_config(config)
    ensemble.check_member(members, index, workdir)
    method = registry.create(config)
    state = create_train_state(config, method, members)
    state, epoch = checkpoints.restore_or_keep(
        checkpoints.create_manager(workdir), state, workdir)
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
    target = create_train_state(standalone, method, [member])
    chosen = ensemble.member(state, index, keep_axis=True)
    size = member["latent_size"]
    exported = target.replace(
        step=chosen.step, rng=chosen.rng,
        batch_stats=ensemble.resize_latent(chosen.batch_stats, size),
        params=ensemble.resize_latent(chosen.params, size),
        opt_state=ensemble.resize_latent(chosen.opt_state, size))
    workdir_lib.prepare_workdir(out_dir, standalone)
    manager = checkpoints.create_manager(out_dir)
    checkpoints.save(manager, epoch, exported)
    manager.wait_until_finished()
    return {**member, "epoch": epoch}
