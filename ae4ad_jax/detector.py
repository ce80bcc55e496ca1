"""A trained detector in use: one member of a run, its decision threshold, and images.

`load(workdir, member)` restores a member from a finished run's checkpoint with
the threshold the run set on normal images (`thresholds.json`). `Detector.score`
scores uint8 images of the model's size in fixed batches (one compiled program
for any number of images); `conform` brings arrays of any size and 1 or 3
channels to that size as the training data were brought (`datasets.real`).
The command line (`score.py`) and the Python API (`api.py`) are built on these.
"""

import dataclasses
import json
import os

import jax
import numpy as np
from PIL import Image

from ae4ad_jax import ensemble, evaluate, run_outputs, sharding
from ae4ad_jax.datasets.real import convert_image
from ae4ad_jax.errors import UserError


@dataclasses.dataclass
class Detector:
    config: object
    method: object
    member: dict  # {"member": index, "latent_size", "seed", ...}
    weights: dict  # {"variables", "latent_mask", "rng"} with a member axis of 1
    epoch: int
    threshold: float | None  # None when the run set none for this checkpoint
    false_positive_rate: float | None
    workdir: str

    @property
    def image_shape(self) -> tuple:
        return (self.config.image_size, self.config.image_size, self.config.channels)

    def score(self, images, first: int = 0) -> dict:
        """{"score": [N], "map": [N, S, S] (methods with maps)} for uint8 [N, S, S, C].

        Images are scored in batches of `eval.batch_size`, the last one padded, so
        every call compiles (once) the same program; `first` is the first image's
        index (its random stream, for methods that sample at test time)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.shape[1:] != self.image_shape:
            raise ValueError(f"Detector.score takes uint8 images {self.image_shape}, got "
                             f"{images.dtype} {images.shape[1:]}; use conform() first.")
        batch = self.config.eval.batch_size
        parts = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            padded = np.zeros((batch,) + self.image_shape, np.uint8)
            padded[:len(chunk)] = chunk
            out = evaluate.score_images(self.weights, padded, first + start,
                                        method=self.method, batch_size=batch, with_maps=True)
            parts.append({key: np.asarray(out[key][0, :len(chunk)])
                          for key in ("score", "map") if key in out})
        if not parts:
            return {"score": np.zeros(0, np.float32)}
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def require_threshold(self) -> float:
        if self.threshold is None:
            raise UserError(f"{self.workdir} has no decision threshold for the checkpoint of "
                            f"epoch {self.epoch}: run `python -m ae4ad_jax.main "
                            f"--workdir={self.workdir} --eval_only` to set it, or give one.")
        return self.threshold

    def decide(self, scores):
        """1 (abnormal) where the score is above the threshold, else 0."""
        return (np.asarray(scores) > self.require_threshold()).astype(np.int32)


def _writer(workdir) -> str | None:
    """The git commit of the code that wrote a workdir (its summary's manifest)."""
    try:
        with open(os.path.join(workdir, run_outputs.SUMMARY_FILE)) as f:
            return json.load(f)["manifest"]["source"]["commit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _restore(workdir, index):
    from ae4ad_jax import checkpointing, export, manifest

    try:
        return export.restore_member(workdir, index)
    except checkpointing.IncompatibleCheckpoint as error:
        here, writer = manifest.git_state()["commit"], _writer(workdir)
        if writer and writer == here:
            raise UserError(f"The checkpoint in {workdir} does not fit the model its "
                            f"config.json describes ({error.detail}); was config.json "
                            "edited?") from None
        written = f"commit {writer[:12]}" if writer else "another version"
        raise UserError(
            f"The checkpoint in {workdir} was written by {written} of ae4ad-jax, whose model "
            f"this version (commit {(here or 'unknown')[:12]}) cannot read "
            f"({error.detail}). Score it with the version that trained it, or train "
            "again.") from None


def read_threshold(workdir, index, epoch):
    """(threshold, false-positive rate) of member `index` for the checkpoint of `epoch`,
    or (None, None) when thresholds.json is missing or belongs to another checkpoint."""
    try:
        with open(os.path.join(workdir, run_outputs.THRESHOLDS_FILE)) as f:
            saved = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as error:
        raise UserError(f"{workdir}/{run_outputs.THRESHOLDS_FILE} is unreadable ({error}); "
                        f"rerun `python -m ae4ad_jax.main --workdir={workdir} --eval_only`."
                        ) from None
    if saved.get("epoch") != epoch:
        return None, None
    rows = [row for row in saved["members"] if row["member"] == index]
    return (float(rows[0]["threshold"]), float(saved["false_positive_rate"])) if rows \
        else (None, None)


def load(workdir: str, index: int = 0) -> Detector:
    """Member `index` of the run in `workdir` at its latest checkpoint."""
    if not os.path.isdir(workdir):
        raise UserError(f"Workdir {workdir} does not exist.")
    config, method, members, state, epoch = _restore(workdir, index)
    chosen = jax.device_get(sharding.to_host(ensemble.member(state, index, keep_axis=True)))
    weights = evaluate.scoring_weights(chosen)
    threshold, rate = read_threshold(workdir, index, epoch)
    return Detector(config, method, {"member": index, **members[index]}, weights, epoch,
                    threshold, rate, workdir)


def _to_uint8(image, where) -> np.ndarray:
    """uint8 as given; other integers must lie in 0-255, floats in [0, 1]."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise UserError(f"{where} has dtype {image.dtype}; give uint8 (0-255) or floats "
                        "in [0, 1].")
    low, high = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if np.issubdtype(image.dtype, np.integer):
        if low < 0 or high > 255:
            raise UserError(f"{where} is {image.dtype} with values {low:g} to {high:g}; "
                            "integer images must lie in 0-255 (scale them to uint8 first).")
        return image.astype(np.uint8)
    if not (np.isfinite(image).all() and low >= 0.0 and high <= 1.0):
        raise UserError(f"{where} is {image.dtype} with values {low:g} to {high:g}; float "
                        "images must lie in [0, 1].")
    return np.rint(image * 255.0).astype(np.uint8)


def conform(images, image_size: int, channels: int) -> np.ndarray:
    """Arrays [N, H, W], [N, H, W, C] (C = 1 or 3) or a list of [H, W(, C)] images of any
    sizes, to uint8 [N, S, S, channels] by the training preprocessing: gray or RGB
    conversion (RGB -> gray by ITU-R 601-2 luma, gray -> RGB by copying) and a bilinear
    resize. Images already of the model's size and channels pass unchanged."""
    if isinstance(images, np.ndarray) and images.ndim in (3, 4):
        images = list(images)
    elif not isinstance(images, (list, tuple)):
        raise UserError("Images must be an array [N, H, W] or [N, H, W, C], or a list of "
                        f"[H, W] / [H, W, C] arrays; got {type(images).__name__} of shape "
                        f"{np.shape(images)}.")
    out = np.zeros((len(images), image_size, image_size, channels), np.uint8)
    for i, image in enumerate(images):
        image = _to_uint8(image, f"Image {i}")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        if image.ndim == 2:
            pil = Image.fromarray(np.ascontiguousarray(image), "L")
        elif image.ndim == 3 and image.shape[-1] == 3:
            pil = Image.fromarray(np.ascontiguousarray(image), "RGB")
        else:
            raise UserError(f"Image {i} has shape {image.shape}; images are [H, W] or "
                            "[H, W, C] with 1 or 3 channels.")
        out[i] = convert_image(pil, image_size, channels)
    return out
