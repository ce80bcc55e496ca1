"""Decoding files from strangers: one decoder for training and scoring, the rule for each
bit depth and colour space checked against closed forms, and every cap checked before a
pixel is decoded."""

import os

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import DeflatedExplicitVRLittleEndian

from ae4ad_jax.data import image_files, real
from ae4ad_jax.data.decoding import Limits, UnreadableFile, decode_image
from ae4ad_jax.data.preprocessing import convert_image
from experiments import hostile_files

SIZE = 24


def _png16_rgb(path, pixels):
    """A 16-bit RGB PNG (Pillow cannot write one): pixels uint16 [H, W, 3]."""
    height, width, _ = pixels.shape
    hostile_files.write_png(path, width, height, 16, 2, lambda y: pixels[y].astype(">u2").tobytes())


def _images(root):
    """One file per kind of PNG/TIFF pixel: {name: the 8-bit gray values expected, or None}."""
    ramp = (np.arange(12 * 16) * 255 // 191).reshape(12, 16)  # 0 to 255
    files = {}
    Image.fromarray(ramp.astype(np.uint8)).save(root / "gray8.png")
    files["gray8.png"] = ramp
    # 16-bit gray k * 257 spans 0-65535: min-max gives k back exactly
    Image.fromarray((ramp * 257).astype(np.uint16)).save(root / "gray16.png")
    files["gray16.png"] = ramp
    levels = np.linspace(-3.0, 5.0, 12 * 16, dtype=np.float32).reshape(12, 16)
    Image.fromarray(levels, "F").save(root / "float.tif")
    files["float.tif"] = np.rint((levels.astype(np.float64) + 3) * 255 / 8)
    palette = Image.fromarray(ramp.astype(np.uint8)).convert("P", palette=Image.ADAPTIVE)
    palette.save(root / "palette.png")
    rgb = np.stack([ramp, 255 - ramp, ramp // 2], -1).astype(np.uint8)
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full(ramp.shape, 90, np.uint8)])).save(root / "rgba.png")
    Image.fromarray(np.dstack([ramp, ramp * 0 + 7]).astype(np.uint8), "LA").save(root / "la.png")
    for name in ("palette.png", "rgb.png", "rgba.png", "la.png"):
        files[name] = None
    _png16_rgb(str(root / "rgb16.png"), np.stack([ramp * 256 + 255, ramp * 0 + 300,
                                                  ramp * 0 + 65535], -1))
    files["rgb16.png"] = None
    return files


def test_training_and_scoring_decode_every_kind_of_image_alike(tmp_path):
    expected = _images(tmp_path)
    for name, gray in expected.items():
        path = str(tmp_path / name)
        decoded = image_files.read(path).slices[0]
        if gray is not None:
            np.testing.assert_array_equal(np.asarray(decoded), gray, err_msg=name)
        for channels in (1, 3):
            trained, _ = real.decode(real.Item(path, 0), SIZE, channels, False)
            np.testing.assert_array_equal(trained, convert_image(decoded, SIZE, channels),
                                          err_msg=name)
    # colour of more than 8 bits keeps its top 8 bits (what Pillow does for PNG)
    rgb16 = np.asarray(image_files.read(str(tmp_path / "rgb16.png")).slices[0])
    ramp = (np.arange(12 * 16) * 255 // 191).reshape(12, 16)  # 0 to 255
    np.testing.assert_array_equal(rgb16[..., 0], ramp)
    assert (rgb16[..., 1] == 1).all() and (rgb16[..., 2] == 255).all()  # 300 >> 8, 65535 >> 8


def test_caps_formats_and_file_kinds_are_checked_before_decoding(tmp_path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    cases = [
        (Limits(max_image_pixels=599), "declares 30 x 20 pixels per image, over the cap "
                                       "max_image_pixels = 599"),
        (Limits(max_decoded_bytes=50), "is .* bytes, over the cap max_decoded_bytes = 50"),
    ]
    for limits, message in cases:
        with pytest.raises(UnreadableFile, match=message):
            image_files.read(str(tmp_path / "a.png"), limits)
    (tmp_path / "eps.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n")
    (tmp_path / "empty.tif").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink("loop2.png", tmp_path / "loop1.png")
    os.symlink("loop1.png", tmp_path / "loop2.png")
    os.symlink(tmp_path, tmp_path / "folder.png")
    for name, message in (("eps.png", "not a PNG, JPEG, TIFF or BMP image"),
                          ("empty.tif", r"an empty file \(0 bytes\)"),
                          ("pipe.png", "not a regular file but a FIFO"),
                          ("loop1.png", "cannot be opened .*symbolic links"),
                          ("folder.png", "not a regular file but a folder not searched")):
        with pytest.raises(UnreadableFile, match=message):
            image_files.read(str(tmp_path / name))
    listed = {os.path.basename(p) for p in image_files.list_inputs([str(tmp_path)])}
    assert {"pipe.png", "loop1.png", "folder.png"} <= listed  # kept, for their rows


def _dicom(path, pixels, photometric="MONOCHROME2", **attributes):
    frames = pixels  # [frames, rows, columns, samples]
    ds = hostile_files.dicom_dataset(frames.shape[1], frames.shape[2], photometric,
                                      samples=frames.shape[3],
                                      bits=8 * pixels.itemsize, frames=len(frames),
                                      pixels=frames)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_dicom_colour_depth_window_and_refusals(tmp_path):
    rgb16 = np.zeros((1, 2, 3, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 300, 65535, 4095
    _dicom(str(tmp_path / "rgb16.dcm"), rgb16, "RGB")
    image = np.asarray(image_files.read(str(tmp_path / "rgb16.dcm")).slices[0])
    assert image.shape == (2, 3, 3) and (image == [1, 255, 15]).all()  # v >> 8
    # gray over all frames: min-max of the rescaled values across the file
    stored = np.arange(2 * 4 * 5, dtype=np.uint16).reshape(2, 4, 5, 1) * 3
    _dicom(str(tmp_path / "multi.dcm"), stored, RescaleSlope=2, RescaleIntercept=-7)
    read = image_files.read(str(tmp_path / "multi.dcm"))
    assert read.slice_numbers == [0, 1]
    values = stored[..., 0] * 2.0 - 7
    expected = np.rint((values - values.min()) * 255 / (values.max() - values.min()))
    np.testing.assert_array_equal(np.stack([np.asarray(s) for s in read.slices]), expected)
    with pytest.raises(UnreadableFile, match="declares 2 slices or frames, over the cap "
                                             "max_slices = 1"):
        image_files.read(str(tmp_path / "multi.dcm"), Limits(max_slices=1))
    _dicom(str(tmp_path / "ict.dcm"), np.zeros((1, 2, 2, 3), np.uint8), "YBR_ICT")
    with pytest.raises(UnreadableFile, match="colour space YBR_ICT cannot be converted"):
        image_files.read(str(tmp_path / "ict.dcm"))
    report = _dicom(str(tmp_path / "report.dcm"), np.zeros((1, 2, 2, 1), np.uint8))
    del report.PixelData
    report.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(UnreadableFile, match="without pixel data .*: it holds no image"):
        image_files.read(str(tmp_path / "report.dcm"))
    # no File Meta header: read as pydicom reads it with force=True
    bare = _dicom(str(tmp_path / "x.dcm"), stored[:1])
    del bare.file_meta
    bare.save_as(tmp_path / "bare.dcm", implicit_vr=True, little_endian=True)
    np.testing.assert_array_equal(
        np.asarray(image_files.read(str(tmp_path / "bare.dcm")).slices[0]),
        np.rint(stored[0, ..., 0] * 255.0 / stored[0].max()))


def test_compressed_dicom_decodes_only_as_far_as_its_header_declares(tmp_path):
    good = _dicom(str(tmp_path / "plain.dcm"),
                  np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1))
    good.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    good.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "deflated.dcm").file_meta.TransferSyntaxUID == \
        DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(
        np.asarray(image_files.read(str(tmp_path / "deflated.dcm")).slices[0]),
        np.rint(np.arange(64).reshape(8, 8) * 255.0 / 63))
    hostile_files.write_deflate_bomb(str(tmp_path / "bomb.dcm"), 40 << 20)  # 40 KB on disk
    assert os.path.getsize(tmp_path / "bomb.dcm") < 100_000
    with pytest.raises(UnreadableFile, match="inflates to more than its declared image needs"):
        image_files.read(str(tmp_path / "bomb.dcm"))
    hostile_files.write_jpeg_frame_bomb(str(tmp_path / "frame.dcm"), 30000)
    with pytest.raises(UnreadableFile, match="its frame 0 declares 30000 x 30000 pixels in its "
                                             "codestream, its header 64 x 64"):
        image_files.read(str(tmp_path / "frame.dcm"))
    header = hostile_files.dicom_dataset(8, 8)
    header.Rows = header.Columns = 60000
    header.save_as(tmp_path / "declared.dcm", enforce_file_format=True)
    with pytest.raises(UnreadableFile, match="declares 60000 x 60000 pixels per image"):
        image_files.read(str(tmp_path / "declared.dcm"))


def test_nifti_scaling_slices_and_declared_size(tmp_path):
    stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    image = nibabel.Nifti1Image(stored, np.eye(4))
    image.header.set_slope_inter(-2.0, 10.0)
    nibabel.save(image, tmp_path / "v.nii.gz")
    read = image_files.read(str(tmp_path / "v.nii.gz"), nifti_axis=2, nifti_rotations=0)
    assert read.slice_numbers == list(range(5)) and read.volume.shape == (3, 4, 5)
    values = stored * -2.0 + 10
    expected = np.rint((values - values.min()) * 255 / (values.max() - values.min()))
    np.testing.assert_array_equal(np.stack([np.asarray(s) for s in read.slices], -1), expected)
    hostile_files.write_nifti(str(tmp_path / "declared.nii.gz"), (3000, 3000, 1000), np.uint8, 0)
    with pytest.raises(UnreadableFile, match="declares 8583 MB of pixel data, over the cap"):
        image_files.read(str(tmp_path / "declared.nii.gz"))
    hostile_files.write_nifti(str(tmp_path / "long.nii.gz"), (1, 1, 200000), np.uint8, 200000, 2)
    with pytest.raises(UnreadableFile, match="declares 200000 slices or frames"):
        image_files.read(str(tmp_path / "long.nii.gz"))


def test_a_png_declaring_a_huge_image_is_refused_from_its_header(tmp_path):
    """A 16-bit 10000 x 10000 PNG of zero rows: 0.2 MB on disk, 200 MB decoded."""
    path = str(tmp_path / "bomb.png")
    hostile_files.write_png(path, 10000, 10000, 16, 0, lambda y: bytes(20000))
    assert os.path.getsize(path) < 300_000
    with pytest.raises(UnreadableFile, match="declares 10000 x 10000 pixels per image, over "
                                             "the cap max_image_pixels = 33554432"):
        decode_image(path, Limits())

