"""A run's files in its workdir, each with one writer and one reader here:

- `metrics.jsonl`: one JSON object per evaluation and member;
- `tensorboard/`: scalars and the report's figures (tensorboardX, no TensorFlow needed);
- `thresholds.json`: each member's decision threshold (normal images only);
- `scores.npz`: each member's final scores of the test and the normal images;
- `summary.json`: final metrics per member, parameter count, config, wall time, and
  the manifest (`manifest.py`: package versions, git commit, dataset fingerprint, devices).

`config.json` is `workdir.py`'s; `checkpoints/` is `checkpoints.py`'s; `examples.png`
and `report/` are drawn by `reporting/`.
"""

import json
import math
import os
import re
import zipfile

import numpy as np

from ae4ad_jax.core import files, progress
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.core.logs import log

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
THRESHOLDS_FILE = "thresholds.json"
SCORES_FILE = "scores.npz"
CODE_MODELS_FILE = "code_models.npz"  # what each member's code scores need (evaluation/)
LOSSES_SHOWN = 8  # members whose loss the epoch line shows


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
        files.write_text(self.path, "".join(rows))

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

    def write_images(self, images: dict, epoch):
        """{tag: uint8 array [H, W, 3]} as TensorBoard images."""
        if self.enabled:
            for tag, array in images.items():
                self.tensorboard.add_image(tag, array, epoch, dataformats="HWC")
            self.tensorboard.flush()

    def close(self):
        if self.enabled:
            self.tensorboard.close()


def summarize(config, members, rows, num_params, wall_time) -> dict:
    """summary.json's content."""
    return {
        "metrics": [{"member": m, **member, **row}
                    for m, (member, row) in enumerate(zip(members, rows, strict=True))],
        "num_params": num_params,
        "config": json.loads(config.to_json()),
        "wall_time_s": wall_time,
    }


def write_summary(workdir, summary) -> None:
    files.write_json(os.path.join(workdir, SUMMARY_FILE), summary)
    for row in summary["metrics"]:
        log("final: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in row.items()))


def read_summary(workdir) -> dict:
    """A finished run's summary.json."""
    path = os.path.join(workdir, SUMMARY_FILE)
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot read the final metrics {path}: {error}. Has the run "
                        "finished?") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), list):
        raise UserError(f"{path} holds no metrics rows; was it written by ae4ad-jax?")
    return summary


def write_thresholds(workdir, false_positive_rate, members, rows, epoch) -> None:
    """thresholds.json: each member's decision threshold at `false_positive_rate`, from
    normal images only, for the checkpoint of `epoch`."""
    files.write_json(os.path.join(workdir, THRESHOLDS_FILE), {
        "epoch": epoch, "false_positive_rate": false_positive_rate,
        "normal_images": "val_normal" if rows[0]["threshold_from_val"] else "train_normal",
        "members": [{"member": m, **member, "threshold": row["threshold"],
                     "fpr_test_normal": row.get("fpr_test_normal"),
                     "variant_thresholds": {key.removeprefix("threshold_"): value
                                            for key, value in row.items()
                                            if key.startswith("threshold_")
                                            and key != "threshold_from_val"}}
                    for m, (member, row) in enumerate(zip(members, rows, strict=True))]})


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _check_thresholds(saved, path) -> None:
    """thresholds.json's structure and values; UserError naming the file and the key."""
    def require(condition, key, wanted):
        if not condition:
            raise UserError(f"{path} is malformed: {key} must be {wanted}; rerun `python -m "
                            "ae4ad_jax.main --workdir=WORKDIR --eval_only` to write it again.")

    require(isinstance(saved, dict), "the file", "a JSON object")
    require(isinstance(saved.get("epoch"), int), "key 'epoch'", "an integer")
    rate = saved.get("false_positive_rate")
    require(_number(rate) and 0 < rate < 1, "key 'false_positive_rate'", "in (0, 1)")
    require(isinstance(saved.get("members"), list), "key 'members'", "a list")
    for i, row in enumerate(saved["members"]):
        key = f"members[{i}]"
        require(isinstance(row, dict) and isinstance(row.get("member"), int), key,
                "an object with an integer 'member'")
        require(row.get("threshold") is None or _number(row["threshold"]),
                f"{key}.threshold", "a finite number or null")
        variants = row.get("variant_thresholds", {})
        require(isinstance(variants, dict) and all(
            isinstance(name, str) and (value is None or _number(value))
            for name, value in variants.items()), f"{key}.variant_thresholds",
                "an object of finite numbers")


def _member_thresholds(workdir, index, epoch):
    """(member `index`'s row of thresholds.json, the file) for the checkpoint of `epoch`,
    or (None, None) when the file is missing or belongs to another checkpoint."""
    path = os.path.join(workdir, THRESHOLDS_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is unreadable ({error}); rerun `python -m ae4ad_jax.main "
                        f"--workdir={workdir} --eval_only`.") from None
    _check_thresholds(saved, path)
    if saved["epoch"] != epoch:
        return None, None
    rows = [row for row in saved["members"] if row["member"] == index]
    return (rows[0], saved) if rows else (None, None)


def read_threshold(workdir, index, epoch, variant=None):
    """(threshold, false-positive rate) of member `index`'s score `variant` (None: the
    method's own score; else a code score, evaluation/code_scores.py) for the checkpoint
    of `epoch`, or (None, None) when thresholds.json is missing, belongs to another
    checkpoint or has no threshold for the variant."""
    row, saved = _member_thresholds(workdir, index, epoch)
    value = None if row is None else (row["threshold"] if variant is None
                                      else row.get("variant_thresholds", {}).get(variant))
    return (None, None) if value is None else (float(value), float(saved["false_positive_rate"]))


def read_variant_thresholds(workdir, index, epoch) -> dict:
    """{score variant: threshold} of member `index` for the checkpoint of `epoch`."""
    row, _ = _member_thresholds(workdir, index, epoch)
    return {} if row is None else dict(row.get("variant_thresholds", {}))


def _read_npz(workdir, name) -> dict | None:
    """The arrays of an .npz file of the workdir (None when it has none); never pickled
    objects. UserError naming the file when it cannot be read."""
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            return dict(saved)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is unreadable ({type(error).__name__}: {error}); rerun "
                        f"`python -m ae4ad_jax.main --workdir={workdir} --eval_only` to "
                        "write it again.") from None


def write_code_models(workdir, members) -> None:
    """code_models.npz: each member's code-score model (`members`: a dict of named arrays
    per member), member m's arrays under `m<m>/`."""
    files.write_npz(os.path.join(workdir, CODE_MODELS_FILE), {
        f"m{m}/{key}": value for m, arrays in enumerate(members) for key, value in
        arrays.items()})


def read_code_models(workdir) -> dict | None:
    """{member: its named arrays} of code_models.npz, or None when the run wrote none."""
    saved = _read_npz(workdir, CODE_MODELS_FILE)
    if saved is None:
        return None
    members = {}
    for name, value in saved.items():
        found = re.fullmatch(r"m(\d+)/(.+)", name)
        if found is None:
            raise UserError(f"{os.path.join(workdir, CODE_MODELS_FILE)} is malformed: its "
                            f"array {name!r} belongs to no member (m<member>/<name>).")
        members.setdefault(int(found.group(1)), {})[found.group(2)] = value
    return members


def write_member_results(workdir, index, epoch, out_dir) -> None:
    """Member `index`'s results in `workdir` (its thresholds for the checkpoint of
    `epoch`, code model, final scores and summary row) written into `out_dir` as those of
    a one-member run; what the run did not write is left out."""
    row, saved = _member_thresholds(workdir, index, epoch)
    if row is not None:
        files.write_json(os.path.join(out_dir, THRESHOLDS_FILE), {
            **saved, "members": [dict(row, member=0)]})
    models = read_code_models(workdir)
    if models is not None and index in models:
        write_code_models(out_dir, [models[index]])
    scores = read_scores(workdir)
    if scores is not None:
        write_scores(out_dir, {key: values[index:index + 1] for key, values in scores.items()
                               if key != "test_labels"}, scores.get("test_labels"))
    if os.path.exists(os.path.join(workdir, SUMMARY_FILE)):
        summary = read_summary(workdir)
        summary["metrics"] = [dict(row, member=0) for row in summary["metrics"]
                              if row["member"] == index]
        write_summary(out_dir, summary)


def write_scores(workdir, scores, test_labels) -> None:
    """scores.npz: each member's final scores, [M, N] arrays: `normal` (the images that
    set the thresholds) and, with a test split, `test` with `test_labels` [N]."""
    arrays = {name: np.asarray(values, np.float32) for name, values in scores.items()}
    if "test" in scores:
        arrays["test_labels"] = np.asarray(test_labels, np.int32)
    files.write_npz(os.path.join(workdir, SCORES_FILE), arrays)


def read_scores(workdir) -> dict | None:
    """scores.npz's arrays, or None when the run wrote none (it has not finished)."""
    return _read_npz(workdir, SCORES_FILE)
