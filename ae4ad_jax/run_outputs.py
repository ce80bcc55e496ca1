"""A run's files in its workdir, and its progress lines.

- `config.json`: the resolved config; a workdir holding another experiment is refused;
- `metrics.jsonl`: one JSON object per evaluation and member;
- `tensorboard/`: scalars and the report's figures (tensorboardX, no TensorFlow needed);
- `examples.png`: test images, reconstructions, anomaly maps and masks;
- `thresholds.json`: each member's decision threshold (normal images only);
- `scores.npz`: each member's final scores of the test and the normal images;
- `summary.json`: final metrics per member, parameter count, config, wall time, and
  the manifest (`manifest.py`: package versions, git commit, dataset fingerprint, devices);
- `report/`: `report.md` with the tables and figures (`report.py`, `run_report.py`).
"""

import json
import os
import sys
import tempfile

import jax
import ml_collections
import numpy as np

from ae4ad_jax import ensemble, evaluate, input_pipeline, progress
from ae4ad_jax.errors import UserError
from ae4ad_jax.models import count_params

CONFIG_FILE = "config.json"
# Keys that may change between a run and its resumption: the schedule, what is
# evaluated, where data lives, and how the program is compiled and computed. Any
# other change makes the workdir's checkpoints belong to a different experiment.
RESUMABLE_KEYS = ("num_epochs", "eval_every_epochs", "checkpoint_every_epochs", "eval.",
                  "entropy_estimators", "entropy_bootstrap", "data_dir", "tfds_dir", "execution.",
                  "model.compute_dtype", "parallelism", "mesh_shape", "distributed.")
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
EXAMPLES_FILE = "examples.png"
LOSSES_SHOWN = 8  # members whose loss the epoch line shows


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _with_later_defaults(saved: dict) -> dict:
    """A saved config with the groups and keys added since (at their defaults)."""
    from ae4ad_jax import methods

    saved = dict(saved)
    for key, value in (("parallelism", "mesh"), ("mesh_shape", []), ("methods", []),
                       ("table1_workdir", ""), ("entropy_bootstrap", 0),
                       ("rate", {**methods.RATE_DEFAULTS, "filters": list(
                           methods.RATE_DEFAULTS["filters"])}),
                       ("rate_weight", 0.0), ("rate_weights", []),
                       ("method_overrides", methods.OVERRIDE_DEFAULTS),
                       ("distributed", {"initialize": "auto", "coordinator_address": "",
                                        "num_processes": 0, "process_id": -1,
                                        "initialization_timeout_s": 300}),
                       *methods.CONFIG_DEFAULTS.items()):
        saved.setdefault(key, value)
    return saved


def _changed_keys(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ, apart from RESUMABLE_KEYS."""
    saved, current = (_flatten(_with_later_defaults(c)) for c in (saved, current))
    return [key for key in sorted(set(saved) | set(current))
            if not key.startswith(RESUMABLE_KEYS) and saved.get(key) != current.get(key)]


def _write_json(path, value):
    """Writes `path` whole or not at all (a temporary file renamed)."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)


def prepare_workdir(workdir: str, config, *, must_exist=False) -> None:
    """Creates the workdir, checks it is writable and holds no other experiment, and
    writes config.json."""
    if not workdir:
        raise UserError("No --workdir given: name a folder for checkpoints and metrics.")
    if must_exist and not os.path.isdir(workdir):
        raise UserError(f"Workdir {workdir} does not exist.")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise UserError(f"Workdir {workdir} cannot be created or written: {error}.") from None
    path = os.path.join(workdir, CONFIG_FILE)
    current = json.loads(config.to_json())
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError) as error:
            raise UserError(f"{path} is unreadable ({error}); use a fresh --workdir.") from None
        changed = _changed_keys(saved, current)
        if changed:
            old, new = _flatten(saved), _flatten(current)
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise UserError(
                f"Workdir {workdir} holds a run of a different config ({details}); its "
                "checkpoints cannot be resumed with this one. Use a fresh --workdir, or the "
                "saved config.")
    _write_json(path, current)


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The resolved config a workdir was run with (its config.json)."""
    path = os.path.join(workdir, CONFIG_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read the config of workdir {workdir} ({path}): {error}.") \
            from None
    tuples = ("latent_sizes", "seeds", "entropy_estimators", "entropy_weights", "mesh_shape",
              "methods")
    saved = _with_later_defaults(saved)
    missing = [key for key in tuples if key not in saved]
    if missing:
        raise UserError(f"{path} lacks the config keys {missing}; it was written by another "
                        "version. Train again in a fresh --workdir.")
    for key in tuples:
        saved[key] = tuple(saved[key])  # JSON keeps tuples as lists
    return ml_collections.ConfigDict(saved)


def quiet_library_logs() -> None:
    """Keeps Orbax's and TFDS's INFO lines, TFDS's progress bars (dataset preparation
    reports its own progress) and its note on custom builder configs (all ours are)
    out of the progress output, unless -v is given."""
    import logging as python_logging

    import tensorflow_datasets as tfds
    from absl import flags, logging

    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
        tfds.disable_progress_bar()
        python_logging.getLogger("absl").addFilter(
            lambda record: not str(record.msg).startswith("Using custom data configuration"))


def log(message: str) -> None:
    """A progress line on stdout from process 0 (library logging stays at absl's level)."""
    if jax.process_index() == 0:
        print(message, file=sys.stdout, flush=True)


class Writer:
    """Appends metrics rows; on resume drops rows newer than the restored checkpoint.

    A writer that is not `enabled` (processes other than 0) writes nothing."""

    def __init__(self, workdir: str, members: list[dict], start_epoch: int, enabled=True):
        self.members = members
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.path = os.path.join(workdir, METRICS_FILE)
        self._truncate_after(start_epoch)
        self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _truncate_after(self, epoch):
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            rows = [line for line in f if line.strip() and json.loads(line)["epoch"] <= epoch]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(rows)
        os.replace(self.path + ".tmp", self.path)

    def _tag(self, name, m):
        return name if len(self.members) == 1 else f"member{m}/{name}"

    def write_train(self, epoch, losses, images_per_second, num_epochs=None,
                    seconds_left=None):
        """TensorBoard scalars and the epoch's progress line: `epoch 3/20  loss ...
        850 images/s  1:10 left` (the time left from the epochs run so far)."""
        if not self.enabled:
            return
        for m, loss in enumerate(losses):
            self.tensorboard.add_scalar(self._tag("train/loss", m), float(loss), epoch)
        self.tensorboard.add_scalar("train/images_per_second", images_per_second, epoch)
        of = f"/{num_epochs}" if num_epochs else ""
        left = (f"  {progress.format_duration(seconds_left)} left"
                if seconds_left is not None and epoch != num_epochs else "")
        shown = losses if len(losses) <= LOSSES_SHOWN else losses[:LOSSES_SHOWN]
        more = f" (+{len(losses) - len(shown)} members)" if len(shown) < len(losses) else ""
        log(f"epoch {epoch}{of}  loss {' '.join(f'{loss:.5f}' for loss in shown)}{more}  "
            f"{images_per_second:.0f} images/s{left}")

    def write_eval(self, epoch, rows):
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            for m, (member, row) in enumerate(zip(self.members, rows, strict=True)):
                f.write(json.dumps({"epoch": epoch, "member": m, **member, **row}) + "\n")
                for key, value in row.items():
                    self.tensorboard.add_scalar(self._tag(f"eval/{key}", m), value, epoch)
        self.tensorboard.flush()
        for m, row in enumerate(rows):
            pixel = (f"  pixel AP {row['pixel_ap']:.4f}  Dice {row['dice_best']:.4f}"
                     if "pixel_ap" in row else "")
            image = (f"AUROC {row['auroc']:.4f}  AP {row['ap']:.4f}" if "auroc" in row
                     else f"threshold {row['threshold']:.5g} (no test split)")
            log(f"eval epoch {epoch} member {m}: {image}{pixel}")

    def write_report_images(self, report_dir, epoch):
        """The report's figures as TensorBoard images."""
        if self.enabled:
            from ae4ad_jax import run_report

            run_report.tensorboard_images(self.tensorboard, report_dir, epoch)
            self.tensorboard.flush()

    def close(self):
        if self.enabled:
            self.tensorboard.close()


def _example_indices(labels, per_class):
    normal = np.flatnonzero(labels == 0)[:per_class]
    abnormal = np.flatnonzero(labels == 1)[:per_class]
    return np.concatenate([normal, abnormal])


def write_examples(workdir, state, data, config, method):
    """examples.png for member 0 of `state` (host arrays): rows input / reconstruction /
    anomaly map / mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    indices = _example_indices(data.test_labels, config.eval.num_examples)
    first = ensemble.member(state, 0)
    images = input_pipeline.to_float(data.test_images[indices])
    member = evaluate.scoring_weights(first)
    forward = evaluate.forward_fn(method, member)
    keys = jax.random.split(jax.random.PRNGKey(0), len(indices))
    maps, _, outputs = method.score(forward, images, jax.random.key_data(keys),
                                    first.latent_mask)
    recon = np.asarray(outputs["recon"])
    rows = [("input", np.asarray(images)), ("reconstruction", recon)]
    if maps is not None:
        rows.append(("anomaly map", np.asarray(maps)))
    if data.test_masks is not None:
        rows.append(("mask", data.test_masks[indices]))
    fig, axes = plt.subplots(len(rows), len(indices), squeeze=False,
                             figsize=(1.6 * len(indices), 1.7 * len(rows)))
    for r, (name, values) in enumerate(rows):
        for c, i in enumerate(indices):
            ax = axes[r, c]
            image = values[c]
            if image.ndim == 3:  # [H, W, C] in [-1, 1]
                image = np.clip(image * 0.5 + 0.5, 0.0, 1.0)
                image = image[..., 0] if image.shape[-1] == 1 else image
                ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image, cmap="inferno" if name == "anomaly map" else "gray",
                          vmin=0.0, vmax=float(maps.max()) if name == "anomaly map" else 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title("abnormal" if data.test_labels[i] else "normal", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, EXAMPLES_FILE), dpi=100)
    plt.close(fig)


def summarize(config, members, rows, state, wall_time) -> dict:
    """summary.json's content; `state` holds member 0 first."""
    params_of_member0 = jax.tree_util.tree_map(lambda x: x[0], state.params)
    return {
        "metrics": [{"member": m, **member, **row}
                    for m, (member, row) in enumerate(zip(members, rows, strict=True))],
        "num_params": count_params(params_of_member0),
        "config": json.loads(config.to_json()),
        "wall_time_s": wall_time,
    }


THRESHOLDS_FILE = "thresholds.json"


def write_thresholds(workdir, config, members, rows, epoch) -> None:
    """thresholds.json: each member's decision threshold at the configured false-positive
    rate, from normal images only, for the checkpoint of `epoch`."""
    _write_json(os.path.join(workdir, THRESHOLDS_FILE), {
        "epoch": epoch, "false_positive_rate": config.eval.false_positive_rate,
        "normal_images": "val_normal" if rows[0]["threshold_from_val"] else "train_normal",
        "members": [{"member": m, **member, "threshold": row["threshold"],
                     "fpr_test_normal": row.get("fpr_test_normal")}
                    for m, (member, row) in enumerate(zip(members, rows, strict=True))]})


SCORES_FILE = "scores.npz"


def write_scores(workdir, scores, test_labels) -> None:
    """scores.npz: each member's final scores, [M, N] arrays: `normal` (the images that
    set the thresholds) and, with a test split, `test` with `test_labels` [N]."""
    arrays = {name: np.asarray(values, np.float32) for name, values in scores.items()}
    if "test" in scores:
        arrays["test_labels"] = np.asarray(test_labels, np.int32)
    path = os.path.join(workdir, SCORES_FILE)
    with open(path + ".tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(path + ".tmp", path)


def write_summary(workdir, summary) -> None:
    _write_json(os.path.join(workdir, SUMMARY_FILE), summary)
    for row in summary["metrics"]:
        log("final: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in row.items()))
