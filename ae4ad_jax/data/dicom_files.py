"""DICOM files as 8-bit images, bounded: the declared size is checked before any pixel is
decoded, and a deflated file is inflated no further than its declared image needs.

Reading: pydicom, with `force=True` so that files without the File Meta header are
read as pydicom reads them (their transfer syntax then follows the encoding pydicom
found). Compressed transfer syntaxes (JPEG baseline and extended, JPEG lossless,
JPEG-LS, JPEG 2000, RLE) decode through pydicom's plugins (pylibjpeg and its
libjpeg, openjpeg and rle decoders, pyjpegls), after each frame's codestream header
is checked against the file's Rows x Columns.

Values to 0-255, per file:
- gray (MONOCHROME1/2): the modality rescale (slope, intercept, or the modality LUT),
  then the file's first window (WindowCenter/WindowWidth) mapped linearly onto 0-255,
  or without one the file's minimum-maximum range over all frames; MONOCHROME1 is
  inverted;
- PALETTE COLOR: the palette's RGB values;
- colour: YBR_FULL and YBR_FULL_422 converted to RGB by pydicom, YBR_RCT and YBR_ICT
  by the JPEG 2000 decoder; other colour spaces (HSV, ARGB, CMYK, YBR_ICT/RCT outside
  JPEG 2000) are refused;
- colour and palette values of more than 8 bits keep their top 8 bits (as Pillow
  reads a 16-bit colour PNG): v >> (bits - 8).
Each frame of a multi-frame file is a slice.
"""

import contextlib
import math
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

from ae4ad_jax.data.decoding import (
    Limits,
    UnreadableFile,
    check_file,
    check_size,
    describe,
    rescale_to_uint8,
)

HEADER_BYTES = 16 << 20  # the most a deflated file may inflate to before its pixel data
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float, Double Float
GRAY = ("MONOCHROME1", "MONOCHROME2")
# JPEG's start-of-frame markers (not DHT C4, JPG C8, DAC CC) and JPEG-LS's SOF55 (F7)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_HEADER_SEARCH = 4096  # bytes of JP2 boxes before a JPEG 2000 codestream


@contextlib.contextmanager
def _pydicom_errors(what):
    """pydicom's many exception types as one UnreadableFile that says what failed."""
    try:
        yield
    except UnreadableFile:
        raise
    except Exception as error:  # pydicom raises many types for bad files
        raise UnreadableFile(f"{what} ({describe(error)})") from None


def _at_pixels(tag, vr, length):
    del vr, length
    return tag in PIXEL_TAGS


def _int(ds, keyword, default):
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise UnreadableFile(f"its {keyword} is not a number ({value!r})") from None


def _declared_bytes(ds) -> tuple[int, int, int, int]:
    """(width, height, frames, bytes per frame) that the header declares."""
    rows, columns = _int(ds, "Rows", 0), _int(ds, "Columns", 0)
    frames, samples = _int(ds, "NumberOfFrames", 1), _int(ds, "SamplesPerPixel", 1)
    bits = _int(ds, "BitsAllocated", 8)
    if min(rows, columns, frames, samples, bits) < 1:
        raise UnreadableFile(f"declares an empty image ({rows} x {columns} pixels, {frames} "
                             f"frame(s), {samples} sample(s), {bits} bits)")
    return columns, rows, frames, rows * columns * samples * math.ceil(bits / 8)


def _inflated(path, limits: Limits):
    """The dataset of a Deflated Explicit VR Little Endian file, inflated in steps: the
    header first (at most HEADER_BYTES), then no more than its declared pixel data."""
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset, read_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    meta = read_file_meta_info(path)
    length = meta.get("FileMetaInformationGroupLength")
    if length is None:
        raise UnreadableFile("a deflated DICOM file without its File Meta group length")
    with open(path, "rb") as f:
        f.seek(144 + int(length))  # preamble, "DICM", the group length element, the group
        compressed = f.read()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    body = inflater.decompress(compressed, HEADER_BYTES)
    header = read_dataset(DicomBytesIO(body), False, True, stop_when=_at_pixels)
    if not inflater.eof:
        if "Rows" not in header:
            raise UnreadableFile(f"a deflated DICOM file whose header inflates to more than "
                                 f"{HEADER_BYTES >> 20} MB")
        width, height, frames, frame_bytes = _declared_bytes(header)
        check_size(width, height, frames, frame_bytes, limits)
        allowed = HEADER_BYTES + frames * frame_bytes
        body += inflater.decompress(inflater.unconsumed_tail, allowed - len(body) + 1)
        if not inflater.eof:
            raise UnreadableFile(f"a deflated DICOM file that inflates to more than its "
                                 f"declared image needs ({allowed >> 20} MB)")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian  # what the inflated bytes are
    dataset = read_dataset(DicomBytesIO(body), False, True)
    return pydicom.dataset.FileDataset(path, dataset, b"\0" * 128, meta, False, True)


def _dataset(path, limits: Limits):
    """The file's dataset with its pixel data deferred (read when decoded), and a transfer
    syntax to decode it with."""
    import pydicom
    from pydicom import uid
    from pydicom.filereader import read_file_meta_info

    syntax = None
    with contextlib.suppress(Exception):  # no File Meta header: read as pydicom does
        syntax = read_file_meta_info(path).get("TransferSyntaxUID")
    if syntax == uid.DeflatedExplicitVRLittleEndian:
        return _inflated(path, limits)
    ds = pydicom.dcmread(path, force=True, defer_size=1 << 20)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding[:2]
        ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit else
                                          uid.ExplicitVRLittleEndian if little else
                                          uid.ExplicitVRBigEndian)
    return ds


def _codestream_size(frame: bytes) -> tuple[int, int] | None:
    """(height, width) that a JPEG, JPEG-LS or JPEG 2000 codestream declares (its SOF or
    SIZ segment), or None when the frame holds none of these."""
    try:
        if frame[:2] == b"\xff\xd8":  # JPEG and JPEG-LS: segments up to the SOF
            offset = 2
            while frame[offset] == 0xFF and frame[offset + 1] not in SOF_MARKERS:
                offset += 2 + struct.unpack(">H", frame[offset + 2:offset + 4])[0]
            if frame[offset] != 0xFF:
                return None
            return struct.unpack(">HH", frame[offset + 5:offset + 9])
        if frame[:2] == b"\xff\x4f" or frame[:12] == JP2_SIGNATURE:
            start = frame.find(b"\xff\x4f\xff\x51", 0, J2K_HEADER_SEARCH)
            if start < 0:
                return None
            xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", frame[start + 8:start + 24])
            return ysiz - yosiz, xsiz - xosiz
    except (IndexError, struct.error):
        return None
    return None


def _check_frames(ds, width, height, count) -> None:
    """Refuses compressed frames whose codestreams declare more pixels than the header's
    Rows x Columns: a decoder allocates what its codestream says."""
    from pydicom.encaps import generate_frames

    for k, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=count)):
        size = _codestream_size(frame)
        if size is not None and size[0] * size[1] > width * height:
            raise UnreadableFile(f"its frame {k} declares {size[1]} x {size[0]} pixels in its "
                                 f"codestream, its header {width} x {height}")


def _first(value):
    """A DICOM value that may be multi-valued (WindowCenter "40\\400"): its first entry."""
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) \
            else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _top_bits(values, bits) -> np.ndarray:
    """Colour values of `bits` bits as 8-bit: their top 8 bits."""
    if values.dtype == np.uint8 and bits <= 8:
        return values
    shifted = np.right_shift(values.astype(np.int64), max(bits - 8, 0))
    return np.clip(shifted, 0, 255).astype(np.uint8)


def _gray(frames, ds) -> list[np.ndarray]:
    """Gray frames as uint8, by the file's window or its minimum-maximum range; each
    decoded frame is dropped once converted."""
    from pydicom.pixels import apply_modality_lut

    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        low, high = center - width / 2, center + width / 2
    else:
        ranges = []
        for frame in frames:
            values = apply_modality_lut(frame, ds)
            if not np.isfinite(values).all():
                raise UnreadableFile("holds NaN or infinite values")
            ranges.append((float(values.min()), float(values.max())))
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    inverted = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    images = []
    for i, frame in enumerate(frames):
        values = np.asarray(apply_modality_lut(frame, ds), np.float32)
        frames[i] = None
        scaled = rescale_to_uint8(values, low, high)
        images.append(255 - scaled if inverted else scaled)
    return images


def read_dicom(path: str, limits: Limits):
    """(slices as Pillow images, mode "L" or "RGB"; the number of frames). pydicom's
    warnings about lenient parsing stay quiet: what matters becomes the reason."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read(path, limits)


def _read(path, limits):
    from pydicom.pixels import apply_color_lut, get_decoder

    check_file(path, limits)
    with _pydicom_errors("not a readable DICOM file"):
        ds = _dataset(path, limits)
    if not any(tag in ds for tag in PIXEL_TAGS):
        kind = ds.get("SOPClassUID")
        kind = f" ({kind.name})" if kind is not None and hasattr(kind, "name") else ""
        raise UnreadableFile(f"a DICOM file without pixel data{kind}: it holds no image")
    width, height, count, frame_bytes = _declared_bytes(ds)
    check_size(width, height, count, frame_bytes, limits)
    syntax = ds.file_meta.TransferSyntaxUID
    with _pydicom_errors(f"its pixel data ({syntax.name}) cannot be decoded"):
        if syntax.is_encapsulated:
            _check_frames(ds, width, height, count)
        decoder = get_decoder(syntax)
        if not decoder.is_available:
            raise UnreadableFile(f"no decoder for its transfer syntax {syntax.name} is "
                                 "installed")
        decoded = list(decoder.iter_array(ds))
        photometric = str(decoded[0][1].get("photometric_interpretation", ""))
        bits = int(decoded[0][1].get("bits_stored", 8))
        frames = [frame for frame, _ in decoded]
        del decoded
        if photometric in GRAY or (photometric != "PALETTE COLOR" and frames[0].ndim == 2):
            return [Image.fromarray(f, "L") for f in _gray(frames, ds)], count
        if photometric == "PALETTE COLOR":
            rgb = [apply_color_lut(frame, ds) for frame in frames]
            return [Image.fromarray(_top_bits(f, 8 * f.itemsize), "RGB") for f in rgb], count
    if photometric != "RGB" or frames[0].ndim != 3 or frames[0].shape[-1] != 3:
        raise UnreadableFile(f"its colour space {photometric} cannot be converted to RGB")
    return [Image.fromarray(_top_bits(f, bits), "RGB") for f in frames], count
