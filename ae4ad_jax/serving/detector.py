"""A trained detector in use: one member of a run, its decision threshold, and images.

`load(workdir, member)` restores a member of a finished run with the threshold
the run set on normal images (`thresholds.json`). It reads only what scoring
needs from the checkpoint (parameters, BatchNorm statistics, the member's key),
against the shapes of the config's model traced without compiling: no train
state, no optimiser, no trainer. `Detector.score` scores uint8 images of the
model's size in fixed batches, one compiled program for any number of images.
The score command (`files.py`), the StableHLO export (`stablehlo.py`) and the
Python API (`ae4ad_jax.api`) are built on these.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.config import checks
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.evaluation import code_scores, scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.parallel import ensemble
from ae4ad_jax.runs import checkpoints, manifest, results


@dataclasses.dataclass
class Detector:
    config: object
    method: object
    index: int  # which member of its run (row "member" of its metrics)
    hparams: dict  # that member's {"latent_size", "seed", ...}
    weights: dict  # {"variables", "latent_mask", "rng"} with a member axis of 1
    epoch: int
    threshold: float | None  # None when the run set none for this checkpoint
    false_positive_rate: float | None
    workdir: str
    variant: str = code_scores.RECONSTRUCTION  # which score: the method's, or the code's
    code_model: object = None  # its `code_scores.CodeModel` for a code score

    @property
    def image_shape(self) -> tuple:
        return (self.config.image_size, self.config.image_size, self.config.channels)

    def score(self, images, first: int = 0) -> dict:
        """{"score": [N], "map": [N, S, S] (methods with maps)} for uint8 [N, S, S, C].

        Images are scored in batches of `eval.batch_size`, the last one padded, so
        every call compiles (once) the same program; `first` is the first image's
        index (its random stream, for methods that sample at test time). "score" is the
        detector's `variant`; the maps are always the reconstruction maps."""
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
            out = scoring.score_images(self.weights, padded, first + start,
                                       method=self.method, batch_size=batch, with_maps=True)
            parts.append({key: np.asarray(out[key])[0, :len(chunk)]
                          for key in ("score", "map", "z_norm", "bits") if key in out})
        if not parts:
            return {"score": np.zeros(0, np.float32)}
        scored = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        if self.variant != code_scores.RECONSTRUCTION:
            scored["score"] = self.code_model.variants(scored)[self.variant].astype(
                np.float32)
        return {key: value for key, value in scored.items() if key in ("score", "map")}

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
        return results.read_summary(workdir)["manifest"]["source"]["commit"]
    except (UserError, KeyError, TypeError):
        return None


def _template(config, method, width, num_members) -> dict:
    """The checkpoint's parts that scoring reads, as abstract arrays with a member axis:
    every member is stored at the ensemble's width max(d), the shapes of that model."""
    shape = (1, config.image_size, config.image_size, config.channels)
    variables = jax.eval_shape(lambda: method.init_variables(width, jax.random.PRNGKey(0),
                                                             shape))

    def stacked(leaf):
        return jax.ShapeDtypeStruct((num_members,) + leaf.shape, leaf.dtype)

    template = {"params": jax.tree_util.tree_map(stacked, variables["params"]),
                "rng": jax.ShapeDtypeStruct((num_members, 2), jnp.uint32)}
    if variables.get("batch_stats"):
        template["batch_stats"] = jax.tree_util.tree_map(stacked, variables["batch_stats"])
    return template


def _restore(workdir, template):
    try:
        return checkpoints.restore_parts(workdir, template)
    except checkpoints.IncompatibleCheckpoint as error:
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


def _code_model(workdir, index, variant, method_name):
    """The member's code-score model for `variant` (None for the reconstruction score)."""
    if variant == code_scores.RECONSTRUCTION:
        return None
    members = results.read_code_models(workdir)
    if members is None:
        raise UserError(f"{workdir} has no {results.CODE_MODELS_FILE}, so no code scores "
                        f"(score {variant!r}): score with the reconstruction score, or run "
                        f"`python -m ae4ad_jax.main --workdir={workdir} --eval_only` with this "
                        "version to write it.")
    try:
        model = code_scores.CodeModel.from_arrays(members.get(index, {}))
    except ValueError as error:
        raise UserError(f"{os.path.join(workdir, results.CODE_MODELS_FILE)} is malformed "
                        f"(member {index}: {error}). Rerun `python -m ae4ad_jax.main "
                        f"--workdir={workdir} --eval_only` to write it again.") from None
    known = [code_scores.RECONSTRUCTION, *model.variants_available()]
    if variant not in known:
        raise UserError(f"Unknown score {variant!r} for member {index} of {workdir} (method "
                        f"{method_name}): known are {', '.join(known)}.")
    return model


def load(workdir: str, index: int = 0, variant: str = code_scores.RECONSTRUCTION) -> Detector:
    """Member `index` of the run in `workdir` at its latest checkpoint, scoring with
    `variant`: the method's own score ("reconstruction") or a code score
    (evaluation/code_scores.py), with that variant's threshold."""
    if not os.path.isdir(workdir):
        raise UserError(f"Workdir {workdir} does not exist.")
    config = checks.read_saved_config(workdir)
    members = ensemble.member_hparams(config)
    ensemble.check_member(members, index, workdir)
    method = registry.create(config)
    code_model = _code_model(workdir, index, variant, config.method)
    width = max(m["latent_size"] for m in members)
    restored, epoch = _restore(workdir, _template(config, method, width, len(members)))
    if epoch == 0:
        raise UserError(f"{workdir}/checkpoints holds no checkpoint to score with.")
    chosen = jax.tree_util.tree_map(lambda x: x[index:index + 1], restored)
    constants = jax.tree_util.tree_map(lambda x: np.asarray(x)[None],
                                       method.frozen_variables())
    weights = jax.device_put({
        "variables": {"params": chosen["params"],
                      "batch_stats": chosen.get("batch_stats", {}), **constants},
        "latent_mask": ensemble.latent_mask(members[index]["latent_size"], width)[None],
        "rng": chosen["rng"]})
    threshold, rate = results.read_threshold(
        workdir, index, epoch, None if variant == code_scores.RECONSTRUCTION else variant)
    return Detector(config, method, index, members[index], weights, epoch,
                    threshold, rate, workdir, variant, code_model)
