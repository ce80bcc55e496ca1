"""Linen modules of the MedIAnomaly benchmark's autoencoder.

Everything PyTorch does by default and the reference relies on (weight
initialisation, BatchNorm statistics, ConvTranspose2d geometry) is reproduced
here and nowhere else, so that results are comparable with the paper.
Tensors are NHWC: `[B, H, W, C]`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch's default kaiming_uniform(a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
_TORCH_SCALE = 1.0 / 3.0
BN_MOMENTUM = 0.9  # Flax convention: running = m * running + (1 - m) * batch (torch 0.1)
BN_EPSILON = 1e-5
DOWNSAMPLE_FACTOR = 16  # four stride-2 blocks


def torch_kernel_init(in_axis=-2, out_axis=-1):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in taken over `in_axis` and the spatial axes."""
    return nn.initializers.variance_scaling(
        _TORCH_SCALE, "fan_in", "uniform", in_axis=in_axis, out_axis=out_axis)


def torch_bias_init(fan_in: int):
    """PyTorch's Linear bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / jnp.sqrt(fan_in)

    def init(rng, shape, dtype=jnp.float32):
        return jax.random.uniform(rng, shape, dtype, -bound, bound)

    return init


class Dense(nn.Module):
    """torch.nn.Linear: weight and bias both U(-1/sqrt(in), 1/sqrt(in)); float32
    parameters, computed in the input's dtype."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, kernel_init=torch_kernel_init(), dtype=x.dtype,
                        bias_init=torch_bias_init(x.shape[-1]))(x)


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, stride, padding):
    return _convolve(x, kernel, (stride, stride), ((padding, padding),) * 2)


def _convolve(x, kernel, strides, padding, lhs_dilation=None):
    """Convolution summing in float32 whatever the operands' dtype (bfloat16 products
    summed in bfloat16 lose the gradients), returned in the operands' dtype."""
    y = lax.conv_general_dilated(x, kernel, strides, padding, lhs_dilation=lhs_dilation,
                                 dimension_numbers=_DIMENSIONS,
                                 preferred_element_type=jnp.float32)
    return y.astype(x.dtype)


def _flip_io(kernel):
    """The HWIO kernel of the adjoint of a (4, 2, 1) resampling convolution."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


# Which lowering each resampling convolution takes, by the channel count of its
# full-resolution side (a downsampling conv's input, an upsampling conv's output):
# up to these counts the space-to-depth forms are faster on XLA:CPU, beyond them the
# strided convolution (down) and the phases (up) are (per-layer A/B, README). A
# transposed convolution that is only evaluated (scoring) takes space-to-depth up to
# more channels than one that is trained: its forward pass alone is faster so, but
# with its gradients the phases are. Likewise a downsampling conv of at most
# TAPS_DOWN_MAX_CHANNELS input channels that is only evaluated is summed as
# broadcast products (`downsample_by_taps`), twice as fast for one channel; in the
# train step XLA fuses that elementwise chain into its consumers and the step ran
# 5-13% slower (in-process A/B), so trained ones keep space-to-depth. An evaluated
# transposed convolution to at most PRODUCTS_UP_MAX_CHANNELS channels (the last layer
# of a one-channel AE) is one matrix product and shifted sums (`upsample_by_products`):
# scoring +15% at 64x64 in batches of 64, +4% in batches of 256, neutral at
# 128x128; with 3 channels it was 7-15% slower (in-process A/B).
S2D_DOWN_MAX_CHANNELS = 4
TAPS_DOWN_MAX_CHANNELS = 2
S2D_UP_MAX_CHANNELS = 4
S2D_UP_INFERENCE_MAX_CHANNELS = 16
PRODUCTS_UP_MAX_CHANNELS = 1


def space_to_depth(x):
    """[N, 2h, 2w, C] -> [N, h, w, 4C]: each 2x2 block's pixels as channels (row, col, C)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // 2, w // 2, 4 * c)


def depth_to_space(y):
    """The inverse of `space_to_depth`: [N, h, w, 4C] -> [N, 2h, 2w, C]."""
    n, h, w, c4 = y.shape
    y = y.reshape(n, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, c4 // 4)


def _pad1(x):
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def downsample_by_s2d(x, kernel):
    """Conv(4, stride 2, padding 1) as a 2x2 stride-1 convolution over the padded input's
    2x2 blocks: padded row 2(i + d) + p meets kernel row 2d + p. Needs even H and W."""
    i, o = kernel.shape[2:]
    blocks = kernel.reshape(2, 2, 2, 2, i, o).transpose(0, 2, 1, 3, 4, 5)
    return _convolve(space_to_depth(_pad1(x)), blocks.reshape(2, 2, 4 * i, o), (1, 1),
                     ((0, 0), (0, 0)))


def upsample_by_s2d(x, kernel):
    """ConvTranspose(4, stride 2, padding 1) as one 2x2 stride-1 convolution of the padded
    input into the four output phases as channels, then depth-to-space, cropped by one.
    `kernel` is the HWIO kernel of the equivalent dilated convolution: block row u of
    phase a reads input rows u - 1 and u through kernel rows 1 - a and 3 - a."""
    i, o = kernel.shape[2:]
    taps = kernel.reshape(2, 2, 2, 2, i, o)[:, ::-1][:, :, :, ::-1]  # [t, a, t', b, I, O]
    taps = taps.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, i, 4 * o)
    y = depth_to_space(_convolve(_pad1(x), taps, (1, 1), ((0, 0), (0, 0))))
    return y[:, 1:-1, 1:-1]


def downsample_by_taps(x, kernel):
    """Conv(4, stride 2, padding 1) of a few input channels as a sum of 16 * C_in
    broadcast products of strided input windows and kernel rows: one elementwise
    loop over the output, vectorised over its channels, where a convolution library
    does little with so short a contraction. Summed in float32."""
    padded = _pad1(x)
    out_h, out_w = (x.shape[1] - 2) // 2 + 1, (x.shape[2] - 2) // 2 + 1
    kernel = kernel.astype(jnp.float32)
    out = None
    for kh in range(4):
        for kw in range(4):
            window = padded[:, kh:kh + 2 * out_h - 1:2, kw:kw + 2 * out_w - 1:2]
            for c in range(x.shape[-1]):
                term = window[..., c:c + 1].astype(jnp.float32) * kernel[kh, kw, c]
                out = term if out is None else out + term
    return out.astype(x.dtype)


def upsample_by_products(x, kernel):
    """ConvTranspose(4, stride 2, padding 1) as one matrix product of each input pixel
    with all 16 kernel taps, then, for each output phase, a sum of four shifted tap
    planes: for one output channel the space-to-depth convolution has only 4 output
    columns, a shape a convolution library runs far below its rate. Output row 2i + a
    reads input rows i - 1 + a + t through kernel row a + 2t (t = 0, 1), as in
    `upsample_by_phases`. Summed in float32; `kernel` as there."""
    n, h, w, i = x.shape
    o = kernel.shape[-1]
    taps = jnp.dot(x.reshape(-1, i), kernel.transpose(2, 0, 1, 3).reshape(i, 16 * o),
                   preferred_element_type=jnp.float32)
    taps = jnp.pad(taps.reshape(n, h, w, 4, 4, o), ((0, 0), (1, 1), (1, 1)) + ((0, 0),) * 3)

    def phase(a, b):
        return sum(taps[:, a + t:a + t + h, b + u:b + u + w, a + 2 * t, b + 2 * u]
                   for t in (0, 1) for u in (0, 1))

    return _interleave_phases(phase).astype(x.dtype)


def _interleave_phases(phase):
    """[N, 2H, 2W, O] whose pixel (2i + a, 2j + b) is `phase(a, b)`[:, i, j] ([N, H, W, O])."""
    rows = [jnp.stack([phase(a, b) for b in (0, 1)], axis=3) for a in (0, 1)]
    out = jnp.stack(rows, axis=2)  # [N, H, 2(a), W, 2(b), O]
    n, h, _, w, _, o = out.shape
    return out.reshape(n, 2 * h, 2 * w, o)


def _even(x):
    return x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0


def _downsample(x, kernel, taps=False):
    if taps and x.shape[-1] <= TAPS_DOWN_MAX_CHANNELS:
        return downsample_by_taps(x, kernel)
    if _even(x) and x.shape[-1] <= S2D_DOWN_MAX_CHANNELS:
        return downsample_by_s2d(x, kernel)
    return _conv(x, kernel, 2, 1)


def _upsample(x, kernel, max_s2d_channels=None):
    if max_s2d_channels is None:
        max_s2d_channels = S2D_UP_MAX_CHANNELS
    if kernel.shape[-1] <= max_s2d_channels:
        return upsample_by_s2d(x, kernel)
    return upsample_by_phases(x, kernel)


@jax.custom_vjp
def downsample_conv(x, kernel):
    """Conv 4x4, stride 2, padding 1, lowered by its channel counts (broadcast products
    when not differentiated, space-to-depth or XLA's strided convolution), whose input
    gradient is the adjoint upsampling conv (phases or space-to-depth) instead of XLA's
    zero-dilated convolution. Same function."""
    return _downsample(x, kernel, taps=True)  # not differentiated


def _downsample_forward(x, kernel):
    return _downsample(x, kernel), (x, kernel)


def _downsample_backward(residuals, grad):
    x, kernel = residuals
    if not _even(x):  # the adjoint upsampling would miss the last row or column
        return jax.vjp(lambda x, k: _conv(x, k, 2, 1), x, kernel)[1](grad)
    grad_kernel = jax.vjp(lambda k: _downsample(x, k), kernel)[1](grad)[0]
    return _upsample(grad, _flip_io(kernel)), grad_kernel


downsample_conv.defvjp(_downsample_forward, _downsample_backward)


class Conv(nn.Module):
    """torch.nn.Conv2d without bias (square kernel, symmetric padding)."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    phases: bool = True  # the (4, 2, 1) case lowered by its channels (downsample_conv)

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", torch_kernel_init(),
                            (k, k, x.shape[-1], self.features)).astype(x.dtype)
        if self.phases and (k, self.stride, self.padding) == (4, 2, 1):
            return downsample_conv(x, kernel)
        return _conv(x, kernel, self.stride, self.padding)


class ConvTranspose(nn.Module):
    """torch.nn.ConvTranspose2d(k, stride=s, padding=p) without bias.

    The kernel is stored as the HWIO kernel of the equivalent forward
    convolution over the s-dilated input padded by k-1-p, i.e. torch's weight
    `W[i, o, a, b]` is `kernel[k-1-a, k-1-b, i, o]`. PyTorch computes fan_in of
    a ConvTranspose2d weight from its *output* channels, hence `in_axis=-1`.
    """

    features: int
    kernel_size: int = 4
    stride: int = 2
    padding: int = 1
    phases: bool = True  # the (4, 2, 1) case lowered by its channels (upsample_conv)

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", torch_kernel_init(in_axis=-1, out_axis=-2),
                            (k, k, x.shape[-1], self.features)).astype(x.dtype)
        if self.phases and (k, self.stride, self.padding) == (4, 2, 1):
            return upsample_conv(x, kernel)
        edge = k - 1 - self.padding
        return _convolve(x, kernel, (1, 1), ((edge, edge),) * 2,
                         lhs_dilation=(self.stride, self.stride))


# Output row 2i + a of the dilated convolution reads input rows i - 1 + a and i + a
# through kernel rows a and a + 2: a 2-tap convolution padded on one side.
_PHASE_TAPS = {0: ((0, 2), (1, 0)), 1: ((1, 3), (0, 1))}  # phase: (kernel rows, padding)


def upsample_by_phases(x, kernel):
    """ConvTranspose(4, stride 2, padding 1) as four 2x2 stride-1 convolutions whose
    outputs interleave into the doubled grid: no multiplications by inserted zeros.
    `kernel` is the HWIO kernel of the equivalent dilated convolution."""
    def phase(a, b):
        (taps_y, pad_y), (taps_x, pad_x) = _PHASE_TAPS[a], _PHASE_TAPS[b]
        sub = kernel[jnp.array(taps_y)][:, jnp.array(taps_x)]  # [2, 2, I, O]
        return _convolve(x, sub, (1, 1), (pad_y, pad_x))

    return _interleave_phases(phase)


@jax.custom_vjp
def upsample_conv(x, kernel):
    """ConvTranspose(4, stride 2, padding 1) by phases, space-to-depth or products (by its
    channel counts, and by whether it is differentiated), whose input gradient (a strided
    convolution) is the adjoint downsampling conv. Same function."""
    if kernel.shape[-1] <= PRODUCTS_UP_MAX_CHANNELS:  # not differentiated
        return upsample_by_products(x, kernel)
    return _upsample(x, kernel, S2D_UP_INFERENCE_MAX_CHANNELS)


def _upsample_forward(x, kernel):
    return _upsample(x, kernel), (x, kernel)


def _upsample_backward(residuals, grad):
    x, kernel = residuals
    grad_kernel = jax.vjp(lambda k: _upsample(x, k), kernel)[1](grad)[0]
    return _downsample(grad, _flip_io(kernel)), grad_kernel


upsample_conv.defvjp(_upsample_forward, _upsample_backward)


def _rows_sum(weights, values):
    """Sum over all axes but the last, row b weighted by `weights[b]`: a matrix product
    over the batch, then a sum over positions (XLA:CPU reduces far slower than it
    multiplies; HIGHEST keeps full float32 on accelerators)."""
    per_position = jnp.dot(weights, values.reshape(values.shape[0], -1),
                           precision=lax.Precision.HIGHEST)
    return jnp.sum(per_position.reshape(-1, values.shape[-1]), axis=0)


def _positions(x):
    count = 1
    for size in x.shape[1:-1]:
        count *= size
    return count


def _psum(value, axis_name):
    return value if axis_name is None else lax.psum(value, axis_name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def batch_norm_train(x, weights, scale, bias, axis_name=None):
    """Training-mode BatchNorm of `x` [B, ..., C] over its real rows (`weights` [B] of 0/1).

    Returns (y, mean, biased variance, count). Statistics are pooled over
    `axis_name` when given. The backward pass is the closed form of BatchNorm's
    gradient with the same weighted sums as the forward pass (matrix products).
    """
    return _batch_norm_forward(x, weights, scale, bias, axis_name)[0]


def _batch_norm_forward(x, weights, scale, bias, axis_name):
    xf = x.astype(jnp.float32)
    count = _psum(jnp.sum(weights) * _positions(x), axis_name)
    mean = _psum(_rows_sum(weights, xf), axis_name) / count
    centred = xf - mean
    var = _psum(_rows_sum(weights, jnp.square(centred)), axis_name) / count
    rstd = lax.rsqrt(var + BN_EPSILON)
    y = (centred * (rstd * scale) + bias).astype(x.dtype)
    return (y, mean, var, count), (x, weights, scale, mean, rstd, count)


def _batch_norm_backward(axis_name, residuals, cotangents):
    x, weights, scale, mean, rstd, count = residuals
    grad_y, grad_mean, grad_var, _ = cotangents
    normalised = (x.astype(jnp.float32) - mean) * rstd
    grad_y = grad_y.astype(jnp.float32)
    ones = jnp.ones_like(weights)
    grad_bias = _rows_sum(ones, grad_y)  # this device's rows, as autodiff gives
    grad_scale = _rows_sum(ones, grad_y * normalised)
    total_mean = grad_mean - rstd * scale * _psum(grad_bias, axis_name)
    total_var = grad_var - 0.5 * rstd * rstd * scale * _psum(grad_scale, axis_name)
    row = weights.reshape((-1,) + (1,) * (x.ndim - 1)) / count
    grad_x = (grad_y * (rstd * scale) + row * total_mean
              + row * (2.0 / rstd) * normalised * total_var)
    return grad_x.astype(x.dtype), jnp.zeros_like(weights), grad_scale, grad_bias


batch_norm_train.defvjp(_batch_norm_forward, _batch_norm_backward)


class BatchNorm(nn.Module):
    """torch BatchNorm1d/2d over all axes but the last, with an optional row mask.

    Training normalises with the biased batch variance and updates the running
    variance with the unbiased one, as PyTorch does. `mask` ([B], 1 for real
    rows, 0 for padding) keeps padded rows out of the statistics, so a padded
    batch gives exactly the statistics of its real rows. With `axis_name` the
    statistics are pooled across devices.
    """

    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool, mask=None):
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        if not train:
            inv = lax.rsqrt(running_var.value + BN_EPSILON) * scale
            return ((x - running_mean.value) * inv + bias).astype(x.dtype)
        weights = (jnp.ones(x.shape[:1]) if mask is None else mask).astype(jnp.float32)
        y, mean, var, count = batch_norm_train(x, weights, scale, bias, self.axis_name)
        if not self.is_initializing():
            unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
            running_mean.value = BN_MOMENTUM * running_mean.value + (1 - BN_MOMENTUM) * mean
            running_var.value = BN_MOMENTUM * running_var.value + (1 - BN_MOMENTUM) * unbiased
        return y


def relu(x):
    """max(x, 0) with relu's gradient (0 at 0), NaN kept, written as a select.

    XLA:CPU recomputes a cheap chain such as BatchNorm + max(x, 0) inside each
    consumer it can fuse it into, among them the batch-minor transposes in front
    of the weight-gradient convolutions, where the recomputation makes the
    transpose several times slower (experiments/transpose_probe.py). A select of
    two full-size operands is not duplicated: it is computed once and read.
    """
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


class ConvBlock(nn.Module):
    """The reference's BasicBlock: a resampling conv plus depth-1 extra 3x3 convs.

    Downsampling blocks put the extra convs after the strided conv, upsampling
    blocks before the transposed conv. `last` drops the final BN and ReLU.
    """

    features: int
    depth: int = 1
    upsample: bool = False
    last: bool = False
    axis_name: str | None = None
    phases: bool = True

    @nn.compact
    def __call__(self, x, train: bool, mask=None):
        def norm_relu(y):
            return relu(BatchNorm(self.axis_name)(y, train, mask))

        if self.upsample:
            for _ in range(self.depth - 1):
                x = norm_relu(Conv(x.shape[-1], 3, padding=1)(x))
            x = ConvTranspose(self.features, phases=self.phases)(x)
        else:
            x = norm_relu(Conv(self.features, 4, stride=2, padding=1, phases=self.phases)(x))
            for _ in range(self.depth - 1):
                x = norm_relu(Conv(self.features, 3, padding=1)(x))
            return x
        return x if self.last else norm_relu(x)


class Bottleneck(nn.Module):
    """Fully connected (or 1x1-conv, `spatial`) bottleneck; returns (features, z).

    `latent_mask` ([d], 1 for active units) zeroes latent units: an ensemble of
    mixed latent sizes shares one width max(d) and each member masks the units
    beyond its own d, which then carry exactly zero and receive zero gradients.
    """

    latent_size: int
    hidden_width: int = 1024
    spatial: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None):  # x: [B, h, w, C]
        shape = x.shape
        if self.spatial:
            def layer(f, name):
                return Conv(f, 1, name=name)
        else:
            x = x.reshape(shape[0], -1)

            def layer(f, name):
                return Dense(f, name=name)
        h = relu(BatchNorm(self.axis_name)(layer(self.hidden_width, "encode_hidden")(x),
                                           train, mask))
        z = layer(self.latent_size, LATENT_OUT)(h)
        if latent_mask is not None:
            z = z * latent_mask
        h = relu(BatchNorm(self.axis_name)(layer(self.hidden_width, LATENT_IN)(z),
                                           train, mask))
        out = layer(shape[-1] if self.spatial else x.shape[-1], "decode_features")(h)
        return out.reshape(shape), z


LATENT_OUT, LATENT_IN = "to_latent", "from_latent"  # the layers whose shapes depend on d


def resize_latent(tree, size: int):
    """Pads with zeros (or cuts) the latent axis of a params-shaped tree to `size`.

    Works on params and on anything with their structure (Adam moments): the
    output axis of `to_latent` and the input axis of `from_latent`'s kernel.
    """

    def fit(path, leaf):
        names = [getattr(key, "key", None) for key in path]
        if LATENT_OUT in names:
            axis = leaf.ndim - 1
        elif LATENT_IN in names and names[-1] == "kernel":
            axis = leaf.ndim - 2
        else:
            return leaf
        if leaf.shape[axis] >= size:
            return jax.lax.slice_in_dim(leaf, 0, size, axis=axis)
        widths = [(0, 0)] * leaf.ndim
        widths[axis] = (0, size - leaf.shape[axis])
        return jnp.pad(leaf, widths)

    return jax.tree_util.tree_map_with_path(fit, tree)


class AutoEncoder(nn.Module):
    """The benchmark's AE. Returns `{'recon': [B,H,W,C], 'z': [B,d] (or [B,h,w,d])}`."""

    latent_size: int = 16
    channels: int = 1
    base_width: int = 16
    expansion: int = 1
    hidden_width: int = 1024
    encoder_depth: int = 1
    decoder_depth: int = 1
    spatial: bool = False
    axis_name: str | None = None
    phases: bool = True  # fast resampling lowerings (phases, space-to-depth): same function
    # Activations and products in this dtype (bfloat16 for accelerators); parameters,
    # BatchNorm statistics and the outputs stay float32.
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool, mask=None, latent_mask=None) -> dict[str, Any]:
        x = x.astype(self.dtype)
        if latent_mask is not None:
            latent_mask = latent_mask.astype(self.dtype)
        width = self.base_width * self.expansion
        enc_widths = (width, 2 * width, 4 * width, 4 * width)
        dec_widths = (4 * width, 2 * width, width, self.channels)
        for features in enc_widths:
            x = ConvBlock(features, self.encoder_depth, axis_name=self.axis_name,
                          phases=self.phases)(x, train, mask)
        x, z = Bottleneck(self.latent_size, self.hidden_width, self.spatial,
                          self.axis_name)(x, train, mask, latent_mask)
        for i, features in enumerate(dec_widths):
            x = ConvBlock(features, self.decoder_depth, upsample=True, last=i == 3,
                          axis_name=self.axis_name, phases=self.phases)(x, train, mask)
        return {"recon": x.astype(jnp.float32), "z": z.astype(jnp.float32)}


def count_params(params) -> int:
    """Number of trainable scalars (BatchNorm running statistics are not params)."""
    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
