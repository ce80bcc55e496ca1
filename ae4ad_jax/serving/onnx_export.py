"""A trained member's scoring function as an ONNX model, for runtimes without JAX (ONNX
Runtime, OpenVINO, TensorRT), written by `python -m ae4ad_jax.export --format=onnx`.

The model maps a batch of uint8 images `images` [B, H, W, C] (any B; H, W, C as in
training) to the image scores `score` [B] and the anomaly maps `map` [B, H, W], the
member's weights inside: the same function as the StableHLO export and the run's
evaluation (`evaluation.scoring.score_batch`), converted by jax2onnx from the model's
accelerator form (XLA's convolutions, not the CPU kernels). Resizing to H x W and the
channel conversion happen before the model, as `data.preprocessing.conform` does them;
the model scales 0-255 to [-1, 1] itself. Both are written in the graph's doc string,
and the decision threshold of the run (if it set one) in the metadata
(`ae4ad_threshold`, with `ae4ad_false_positive_rate`, `ae4ad_method`, ...).

Two methods differ: GANomaly scores whole images (no `map` output; each image alone,
its own BatchNorm statistics, as a loop over the batch), and the VAE, which
draws its code at test time, takes that draw as a second input `noise` [B, d] (ONNX has
no counterpart of JAX's random streams; `evaluation_noise` gives the run's own draws).
A method whose score is not one forward pass (a gradient of the input: ae-grad,
vae-rec, vae-combi) is refused, as is any function the converter cannot translate.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ae4ad_jax.core import files
from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data.preprocessing import to_float
from ae4ad_jax.evaluation import scoring
from ae4ad_jax.methods import registry
from ae4ad_jax.nets.autoencoder import gaussian_noise
from ae4ad_jax.serving import detector as detector_lib

OPSET = 23
PREPROCESSING = (
    "Input `images`: uint8 [B, {size}, {size}, {channels}], B any. Before the model, resize "
    "each image to {size} x {size} (bilinear, as PIL's resize) and convert it to {kind}, "
    "exactly as ae4ad-jax's data.preprocessing.conform does; the model scales 0-255 to "
    "[-1, 1] itself. Outputs: `score` float32 [B] (higher = more abnormal) and `map` "
    "float32 [B, {size}, {size}]. An image is abnormal when its score is above the "
    "metadata's ae4ad_threshold.")
NOISE = (" Input `noise`: float32 [B, {d}], standard normal: the VAE draws its code at test "
         "time (as the reference does), so its score is random; pass fresh N(0, 1) draws, "
         "or zeros for the mean code.")
NO_MAP = " This method scores whole images: no `map` output."


def _refusal(method) -> str | None:
    """Why `method`'s score cannot be one ONNX graph, or None."""
    if method.anomaly is not None and "gradient" in method.anomaly.__name__:
        return ("its score is a gradient of the input (a backward pass through the "
                "network), not one forward pass")
    return None


def export_onnx(workdir: str, index: int, out_path: str) -> dict:
    """Writes member `index`'s scoring function to `out_path` (.onnx); returns what it
    takes and gives."""
    from jax2onnx import to_onnx

    detector = detector_lib.load(workdir, index)
    config = detector.config.copy_and_resolve_references()
    config.execution.kernels = "xla"  # the accelerator form: no custom CPU kernels
    method = registry.create(config)
    why = _refusal(method)
    if why:
        raise UserError(f"Method {config.method} cannot be exported to ONNX: {why}. Export "
                        "it as StableHLO (--format=stablehlo) instead.")
    weights = jax.tree_util.tree_map(lambda x: x[0], detector.weights)  # one member
    size, channels = config.image_size, config.channels
    d, width = detector.hparams["latent_size"], weights["latent_mask"].shape[-1]
    sampled = samples_code(method, width)

    def rows(images, positions, noise):
        return scoring.score_batch(method, weights, to_float(images), positions,
                                   with_maps=True, noise=noise)

    def one(row):  # a method that scores each image alone: an ONNX loop over the batch
        return jax.tree_util.tree_map(lambda v: v[0], rows(*jax.tree_util.tree_map(
            lambda v: v[None], row)))

    def outputs(images, noise=None):  # positions 0..B-1 without jnp.arange (no symbolic B)
        positions = jax.lax.broadcasted_iota(jnp.int32, images.shape[:1], 0)
        if noise is not None:  # the member's d units, zeros for the ensemble's padding
            noise = jnp.pad(noise, ((0, 0), (0, width - d)))
        if method.per_image:
            return jax.lax.map(one, (images, positions, noise))
        return rows(images, positions, noise)

    batch = jax.export.symbolic_shape("B")[0]
    inputs = [jax.ShapeDtypeStruct((batch, size, size, channels), jnp.uint8)]
    if sampled:
        inputs.append(jax.ShapeDtypeStruct((batch, d), jnp.float32))
    names = [name for name in ("score", "map")  # GANomaly has no map
             if name in jax.eval_shape(outputs, *[jax.ShapeDtypeStruct(
                 (1, *x.shape[1:]), x.dtype) for x in inputs])]

    def graph(*args):  # one trace of the network for all outputs
        out = outputs(*args)
        return tuple(out[name] for name in names)

    try:
        model = to_onnx(graph, inputs,
                        model_name=f"ae4ad_{config.method}", opset=OPSET,
                        input_names=["images", "noise"][:len(inputs)], output_names=names)
    except Exception as error:  # the converter has no rule for one of the operations
        raise UserError(f"Method {config.method} cannot be exported to ONNX: jax2onnx "
                        f"says {str(error).splitlines()[0]}") from None
    model.doc_string = PREPROCESSING.format(
        size=size, channels=channels, kind="gray" if channels == 1 else "RGB") + (
        NOISE.format(d=d) if sampled else "") + ("" if "map" in names else NO_MAP)
    metadata = {"method": config.method, "member": index, "epoch": detector.epoch,
                "image_size": size, "channels": channels, **detector.hparams,
                "threshold": detector.threshold,
                "false_positive_rate": detector.false_positive_rate}
    for key, value in metadata.items():  # None (no threshold set) as ""
        entry = model.metadata_props.add()
        entry.key, entry.value = f"ae4ad_{key}", "" if value is None else str(value)
    with files.atomic_path(out_path) as partial, open(partial, "wb") as f:
        f.write(model.SerializeToString())
    return {"member": index, **detector.hparams, "epoch": detector.epoch,
            "input": ["B", size, size, channels], "dtype": "uint8",
            "noise": ["B", d] if sampled else None, "outputs": names,
            "threshold": detector.threshold}


def samples_code(method, width: int) -> bool:
    """Whether `method`'s network draws its code at test time (the VAE's Gaussian z)."""
    return getattr(method.create_model(width), "latent", None) == "gaussian"


def evaluation_noise(detector, positions) -> np.ndarray:
    """The noise [N, d] the run's evaluation drew for the scored set's images at
    `positions` (the ONNX graph's `noise` input that reproduces its scores)."""
    weights = jax.tree_util.tree_map(lambda x: x[0], detector.weights)
    noise = gaussian_noise(scoring.scoring_keys(weights, jnp.asarray(positions)),
                           weights["latent_mask"].shape[-1])
    return np.asarray(noise[:, :detector.hparams["latent_size"]], np.float32)
