"""NIfTI volumes as 8-bit slices, bounded, and anomaly maps written back onto their grid.

The header (shape and data type) is checked against the caps before any voxel is
read. Values to 0-255: the header's scaling (scl_slope, scl_inter) applied, then the
volume's minimum-maximum range mapped onto 0-255, in float32, one slice at a time.
Slices are taken along `axis` and turned by `rotations` quarter turns (1 shows an
axial slice of an RAS volume with anterior up, as viewers do).
"""

import dataclasses
import os

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


@dataclasses.dataclass
class Volume:
    """What writing a NIfTI anomaly map back needs: the input's shape and affine."""

    shape: tuple
    affine: np.ndarray
    header: object
    axis: int
    rotations: int


def _open(path, axis, limits: Limits):
    """(the nibabel image, its 3-D shape) after checking the declared size."""
    import nibabel

    try:
        image = nibabel.load(path)  # reads the header only
        shape, dtype = tuple(int(n) for n in image.shape), image.get_data_dtype()
    except Exception as error:  # nibabel raises many types for bad files
        raise UnreadableFile(f"not a readable NIfTI volume ({describe(error)})") from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise UnreadableFile(f"a NIfTI image of shape {shape}; scoring takes 3-D volumes "
                             "(split 4-D series into volumes)")
    rows, columns = (size for a, size in enumerate(shape) if a != axis)
    check_size(columns, rows, shape[axis], rows * columns * dtype.itemsize, limits)
    return image, shape


def _planes(data, axis):
    return np.moveaxis(data, axis, 0)  # a view: plane k is data's slice k along `axis`


def read_nifti(path: str, axis: int, rotations: int, limits: Limits):
    """(slices as Pillow "L" images, the `Volume` to write maps back onto)."""
    check_file(path, limits)
    image, shape = _open(path, axis, limits)
    try:
        raw = np.asanyarray(image.dataobj.get_unscaled()).reshape(shape, order="F")
    except Exception as error:  # a truncated or damaged data block
        raise UnreadableFile(f"its voxels cannot be read ({describe(error)})") from None
    slope, inter = float(image.dataobj.slope), float(image.dataobj.inter)
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise UnreadableFile(f"its scaling is not finite (scl_slope {slope}, scl_inter {inter})")
    low, high = np.inf, -np.inf
    for plane in _planes(raw, axis):
        if plane.dtype.kind == "f" and not np.isfinite(plane).all():
            raise UnreadableFile("the volume holds NaN or infinite values")
        low, high = min(low, float(plane.min())), max(high, float(plane.max()))
    low, high = sorted((low * slope + inter, high * slope + inter))
    slices = []
    for plane in _planes(raw, axis):
        values = plane.astype(np.float32)
        if (slope, inter) != (1.0, 0.0):
            values *= np.float32(slope)
            values += np.float32(inter)
        turned = np.rot90(rescale_to_uint8(values, low, high), rotations)
        slices.append(Image.fromarray(np.ascontiguousarray(turned), "L"))
    return slices, Volume(shape, image.affine, image.header, axis, rotations)


def volume_map(volume: Volume, maps) -> np.ndarray:
    """Slice maps ([K, S, S], the model's size, in slice order) back on the input's voxel
    grid: each resized bilinearly to the slice's shape and turned back."""
    in_plane = [size for a, size in enumerate(volume.shape) if a != volume.axis]
    turned = in_plane[::-1] if volume.rotations % 2 else in_plane  # [rows, columns] shown
    out = np.zeros(volume.shape, np.float32)
    for k, values in enumerate(maps):
        resized = Image.fromarray(np.asarray(values, np.float32), "F").resize(
            (turned[1], turned[0]), resample=Image.BILINEAR)
        index = [slice(None)] * 3
        index[volume.axis] = k
        out[tuple(index)] = np.rot90(np.asarray(resized), -volume.rotations)
    return out


def write_volume_map(volume: Volume, maps, path: str) -> None:
    """The anomaly map as a float32 NIfTI volume with the input's affine."""
    import nibabel

    header = volume.header.copy()
    header.set_data_dtype(np.float32)
    header.set_data_shape(volume.shape)
    image = nibabel.Nifti1Image(volume_map(volume, maps), volume.affine, header)
    tmp = path + ".tmp.nii.gz" if path.endswith(".gz") else path + ".tmp.nii"
    try:
        nibabel.save(image, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
