"""Decoding files from strangers: the caps every decoder checks first, and the one image
decoder that training and scoring share.

Every decoder reads a file's declared size before decoding it and refuses what
exceeds the caps (`Limits`), so a small file cannot claim gigabytes; it reads
regular files only (a FIFO would block forever); and it raises `UnreadableFile`
with the reason for anything it cannot turn into 8-bit images. How each format's
values become 0-255 is stated once, here and in the DICOM and NIfTI modules, and
in docs/detector.md ("From files to pixels").

PNG, JPEG, TIFF and BMP go through Pillow with only those four formats enabled
(Pillow would otherwise pick a plugin by content, EPS among them). Images of 8
bits per sample are returned as Pillow decoded them: Pillow gives 16-bit colour
PNGs their top 8 bits. Gray images of more bits (16-bit, 32-bit integer, float)
are mapped from their minimum to their maximum onto 0-255, in float32.
"""

import dataclasses
import os
import stat
import warnings

import numpy as np
from PIL import Image

from ae4ad_jax.core.settings import setting

PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # > 8 bits, one band


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one input file may decode to. The defaults fit the largest real medical
    images: a 4096 x 8192 whole-slide tile, a 2048-slice CT series, and a 1024 x 1024 x
    1024 volume of 16-bit values in one file."""

    max_image_pixels: int = setting(
        2 ** 25, "pixels of one image, slice or frame (width x height)", low=1)
    max_slices: int = setting(
        2048, "slices of one NIfTI volume or frames of one DICOM file", low=1)
    max_decoded_bytes: int = setting(
        2 ** 31, "bytes of one file's pixel data as stored, decoded; also the largest "
        "file read and the most a deflated DICOM file may inflate to", low=1)


class UnreadableFile(Exception):
    """A file that is not a supported image or cannot be decoded; the message says why."""


def describe(error: BaseException) -> str:
    """An exception as a reason in one line: its type and the first line of its message."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _megabytes(count) -> str:
    return f"{count / 2 ** 20:.0f} MB" if count >= 2 ** 20 else f"{count} bytes"


def check_size(width, height, slices, bytes_per_slice, limits: Limits) -> None:
    """Refuses a declared size over the caps, saying which cap and what was declared."""
    if width * height > limits.max_image_pixels:
        raise UnreadableFile(f"declares {width} x {height} pixels per image, over the cap "
                             f"max_image_pixels = {limits.max_image_pixels}")
    if slices > limits.max_slices:
        raise UnreadableFile(f"declares {slices} slices or frames, over the cap max_slices "
                             f"= {limits.max_slices}")
    if slices * bytes_per_slice > limits.max_decoded_bytes:
        raise UnreadableFile(
            f"declares {_megabytes(slices * bytes_per_slice)} of pixel data, over the cap "
            f"max_decoded_bytes = {_megabytes(limits.max_decoded_bytes)}")


def check_file(path: str, limits: Limits) -> None:
    """Raises UnreadableFile unless `path` is a regular file, not empty, within the caps."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise UnreadableFile(f"cannot be opened ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = ("a folder not searched (a link to a folder, or a folder that cannot be "
                "listed)" if stat.S_ISDIR(info.st_mode) else "a FIFO" if stat.S_ISFIFO(info.st_mode)
                else "a socket" if stat.S_ISSOCK(info.st_mode) else "a device")
        raise UnreadableFile(f"not a regular file but {kind}")
    if info.st_size == 0:
        raise UnreadableFile("an empty file (0 bytes)")
    if info.st_size > limits.max_decoded_bytes:
        raise UnreadableFile(f"is {_megabytes(info.st_size)}, over the cap max_decoded_bytes "
                             f"= {_megabytes(limits.max_decoded_bytes)}")


def rescale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """[low, high] mapped linearly onto 0-255, clipped and rounded; a flat range gives 0.
    `values` (float32) is overwritten."""
    if not high > low:
        return np.zeros(values.shape, np.uint8)
    values -= np.float32(low)
    values *= np.float32(255.0 / (float(high) - float(low)))
    np.clip(values, 0, 255, out=values)
    np.rint(values, out=values)
    return values.astype(np.uint8)


def open_image(path: str, limits: Limits) -> Image.Image:
    """A PNG, JPEG, TIFF or BMP file opened by Pillow (header read, pixels not yet decoded),
    its declared size within the caps."""
    check_file(path, limits)
    try:
        with warnings.catch_warnings():  # our caps decide, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=PIL_FORMATS)
    except Image.DecompressionBombError as error:  # Pillow's own cap, above ours
        raise UnreadableFile(f"declares more pixels than Pillow decodes ({error})") from None
    except (OSError, ValueError, SyntaxError):
        raise UnreadableFile(f"not a {', '.join(PIL_FORMATS[:-1])} or {PIL_FORMATS[-1]} "
                             "image (or its header is damaged)") from None
    try:
        width, height = image.size
        sample_bytes = 4 if image.mode in ("I", "F") else 2 if image.mode.startswith("I;16") \
            else 1
        check_size(width, height, 1, width * height * len(image.getbands()) * sample_bytes,
                   limits)
        frames = getattr(image, "n_frames", 1)
        if frames != 1:
            raise UnreadableFile(f"a {frames}-frame image; give one image per file")
    except BaseException:
        image.close()
        raise
    return image


def decode_image(path: str, limits: Limits) -> Image.Image:
    """A PNG, JPEG, TIFF or BMP file as an 8-bit Pillow image: as decoded for 8 bits per
    sample, wider gray values mapped from their minimum to their maximum onto 0-255."""
    image = open_image(path, limits)
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        image.close()
        raise UnreadableFile(f"cannot be decoded ({error})") from None
    if image.mode not in WIDE_GRAY_MODES:
        return image
    values = np.array(image, np.float32)  # a copy of its own: rescaled in place
    image.close()
    if not np.isfinite(values).all():
        raise UnreadableFile("holds NaN or infinite values")
    return Image.fromarray(rescale_to_uint8(values, values.min(), values.max()), "L")
