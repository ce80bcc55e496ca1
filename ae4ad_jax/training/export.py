"""A trained member leaving its run, in one of `FORMATS` (`python -m ae4ad_jax.export`,
`AnomalyDetector.export`):

- "workdir": a standalone model's workdir. Its checkpoint holds the member's whole
  train state cut to its own latent size (Adam moments included), its `config.json`
  the standalone config (its `latent_size` and `seed`, no ensemble axes), so it
  evaluates, resumes training, or scores files exactly as a run of that single
  model; its thresholds, code model, final scores and summary row come along
  (`runs/results.py`), so it scores with the run's decision threshold at once.
- "stablehlo": the member's scoring function as one `jax.export` file
  (`serving/stablehlo.py`), loaded with JAX and numpy alone;
- "onnx": the same function as an ONNX model (`serving/onnx_export.py`), for ONNX
  Runtime, OpenVINO or TensorRT, with the decision threshold in its metadata.
"""

import os

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import ensemble
from ae4ad_jax.runs import checkpoints, results
from ae4ad_jax.runs import workdir as workdir_lib
from ae4ad_jax.serving import onnx_export, stablehlo
from ae4ad_jax.training.state import create_train_state


def restore_member(workdir: str, index: int):
    """(config, method, members, restored ensemble state, its epoch) of a finished run,
    with member `index` checked to exist."""
    config = registry.resolve_config(workdir_lib.load_saved_config(workdir))
    members = ensemble.member_hparams(config)
    ensemble.check_member(members, index, workdir)
    method = registry.create(config)
    state = create_train_state(config, method, members)
    state, epoch = checkpoints.restore_or_keep(
        checkpoints.create_manager(workdir), state, workdir)
    if epoch == 0:
        raise UserError(f"{workdir}/checkpoints holds no checkpoint to export.")
    return config, method, members, state, epoch


def export_workdir(workdir: str, index: int, out_dir: str) -> dict:
    """Writes member `index` of `workdir` as the workdir `out_dir` (new or empty), whole or
    not at all; returns the member's hyperparameters and epoch."""
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise UserError(f"{out_dir} exists and is not an empty folder; export to a new one.")
    config, method, members, state, epoch = restore_member(workdir, index)
    hparams = members[index]
    standalone = config.copy_and_resolve_references()
    standalone.latent_size, standalone.seed = hparams["latent_size"], hparams["seed"]
    standalone.latent_sizes, standalone.seeds = (), ()
    standalone.entropy_weight = hparams.get("entropy_weight", 0.0)
    standalone.rate_weight = hparams.get("rate_weight", 0.0)
    standalone.entropy_weights, standalone.rate_weights = (), ()
    target = create_train_state(standalone, method, [hparams])
    chosen = ensemble.take(state, index, keep_axis=True)
    size = hparams["latent_size"]
    exported = target.replace(
        step=chosen.step, rng=chosen.rng,
        batch_stats=ensemble.resize_latent(chosen.batch_stats, size),
        params=ensemble.resize_latent(chosen.params, size),
        opt_state=ensemble.resize_latent(chosen.opt_state, size))
    with files.atomic_path(out_dir) as partial:
        workdir_lib.prepare_workdir(partial, standalone)
        manager = checkpoints.create_manager(partial)
        checkpoints.save(manager, epoch, exported)
        manager.wait_until_finished()
        manager.close()
        results.write_member_results(workdir, index, epoch, partial)
    return {"member": index, **hparams, "epoch": epoch}


FORMATS = {"workdir": export_workdir, "stablehlo": stablehlo.export_stablehlo,
           "onnx": onnx_export.export_onnx}


def export(workdir: str, index: int, out: str, format: str = "workdir") -> dict:
    """Member `index` of the finished run in `workdir` written to `out` in `format` (one of
    `FORMATS`); returns what was written (the member, its epoch, the input it takes)."""
    if format not in FORMATS:
        raise UserError(f"Unknown export format {format!r}: the formats are "
                        f"{', '.join(FORMATS)}.")
    if not os.path.isdir(workdir):
        raise UserError(f"Workdir {workdir} does not exist.")
    return {"format": format, **FORMATS[format](workdir, index, out)}
