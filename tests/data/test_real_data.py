"""The real-data builders on generated fixtures in the published layouts."""

import json
import os
import re

import numpy as np
import pytest

from ae4ad_jax.core.errors import UserError
from ae4ad_jax.data import pipeline as input_pipeline
from ae4ad_jax.training import loop
from tests import fixtures


@pytest.fixture
def config(test_config, tmp_path):
    test_config.image_size = 64
    test_config.tfds_dir = str(tmp_path / "tfds")
    return test_config


def _load(config, dataset, root, channels=1):
    config.dataset, config.data_dir, config.channels = dataset, str(root), channels
    return input_pipeline.load(config)


def _check_common(data, n_train, n_normal, n_abnormal, channels):
    assert data.train_images.shape == (n_train, 64, 64, channels)
    assert data.test_images.shape == (n_normal + n_abnormal, 64, 64, channels)
    assert data.train_images.dtype == np.uint8
    np.testing.assert_array_equal(data.test_labels, [0] * n_normal + [1] * n_abnormal)
    for images in (data.train_images, data.test_images):
        assert 20 < images.mean() < 200 and images.std() > 3
    # The bright square landed where it was drawn, and only there.
    abnormal = data.test_images[data.test_labels == 1][..., 0].astype(float)
    normal = data.test_images[data.test_labels == 0][..., 0].astype(float)
    inside, outside = np.zeros((64, 64), bool), np.ones((64, 64), bool)
    inside[20:44, 20:44] = True
    outside[12:52, 12:52] = False
    assert abnormal[:, inside].min() > normal[:, inside].max() + 20
    assert abs(abnormal[:, outside].mean() - normal[:, outside].mean()) < 10
    if channels == 3:
        assert not np.array_equal(data.test_images[..., 0], data.test_images[..., 2])


@pytest.mark.parametrize("dataset", ["rsna", "vin", "brain", "lag"])
def test_medad_layout(config, tmp_path, dataset):
    fixtures.make_medad(tmp_path / "raw")
    data = _load(config, dataset, tmp_path / "raw")
    _check_common(data, 6, 3, 4, 1)
    assert data.test_masks is None


def test_brats_masks_align(config, tmp_path):
    fixtures.make_brats(tmp_path / "raw")
    data = _load(config, "brats", tmp_path / "raw")
    _check_common(data, 6, 3, 4, 1)
    expected = np.zeros((64, 64), np.uint8)
    expected[fixtures.LESION_64] = 1
    for mask in data.test_masks[data.test_labels == 1]:
        np.testing.assert_array_equal(mask, expected)
    assert data.test_masks[data.test_labels == 0].max() == 0


def test_isic_csv(config, tmp_path):
    fixtures.make_isic(tmp_path / "raw")
    data = _load(config, "isic", tmp_path / "raw")
    _check_common(data, 6, 3, 4, 1)  # non-NV training images are left out, as the reference


def test_camelyon16_rgb(config, tmp_path):
    fixtures.make_c16(tmp_path / "raw")
    data = _load(config, "c16", tmp_path / "raw", channels=3)
    _check_common(data, 6, 3, 4, 3)


def test_own_folder_with_masks(config, tmp_path):
    fixtures.make_medad(tmp_path / "raw", masks=True)
    data = _load(config, "folder", tmp_path / "raw")
    _check_common(data, 6, 3, 4, 1)
    assert data.test_masks[data.test_labels == 1][:, fixtures.LESION_64[0],
                                                   fixtures.LESION_64[1]].min() == 1


def test_image_size_128_coexists_with_64(config, tmp_path):
    fixtures.make_brats(tmp_path / "raw")
    small = _load(config, "brats", tmp_path / "raw")
    config.image_size = 128
    large = _load(config, "brats", tmp_path / "raw")
    assert small.test_masks.shape[1:] == (64, 64) and large.test_masks.shape[1:] == (128, 128)
    assert large.test_masks.sum() == 4 * small.test_masks.sum()


def test_validation_split_is_seeded_and_disjoint(config, tmp_path):
    fixtures.make_medad(tmp_path / "raw", n_train=10)
    config.val_fraction = 0.3
    data = _load(config, "rsna", tmp_path / "raw")
    assert len(data.train_images) == 7 and len(data.val_images) == 3
    again = _load(config, "rsna", tmp_path / "raw")
    np.testing.assert_array_equal(again.val_images, data.val_images)
    config.seed = 1
    other = _load(config, "rsna", tmp_path / "raw")
    assert not np.array_equal(other.val_images, data.val_images)
    everything = np.concatenate([data.train_images, data.val_images]).reshape(10, -1)
    assert len({row.tobytes() for row in everything}) == 10


def test_half_prepared_dataset_is_rebuilt(config, tmp_path):
    fixtures.make_brats(tmp_path / "raw")
    data = _load(config, "brats", tmp_path / "raw")
    prepared = input_pipeline.create_builder(config).data_path
    shard = next(p for p in os.listdir(prepared) if "train.array_record" in p)
    with open(os.path.join(prepared, shard), "r+b") as f:
        f.truncate(10)  # as a copy or a disk cut short would leave it
    again = _load(config, "brats", tmp_path / "raw")
    np.testing.assert_array_equal(again.train_images, data.train_images)


# ----------------------------------------------------------------------------- bad input


def _expect(config, dataset, root, pattern):
    with pytest.raises(UserError, match=pattern):
        _load(config, dataset, root)


def test_data_json_missing_invalid_or_incomplete(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_medad(root)
    os.rename(root / "data.json", root / "listing.json")
    _expect(config, "rsna", root, r"data.json is missing")
    (root / "data.json").write_text("{not json")
    _expect(config, "rsna", root, r"data.json is not valid JSON")
    (root / "data.json").write_text(json.dumps({"train": {"0": []}, "test": {"0": []}}))
    _expect(config, "rsna", root, r"data.json lacks key '1'")
    listing = json.loads((root / "listing.json").read_text())
    listing["test"]["1"].append("ghost.png")
    (root / "data.json").write_text(json.dumps(listing))
    _expect(config, "rsna", root, r"lists .*images/ghost.png, which does not exist")


def test_listed_names_that_lead_outside_the_dataset_are_refused(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_medad(root)
    fixtures.save(str(tmp_path / "outside" / "x.png"), np.zeros((8, 8), np.uint8))
    listing = json.loads((root / "data.json").read_text())
    for entry in ("../../outside/x.png", str(tmp_path / "outside" / "x.png")):
        bad = json.loads(json.dumps(listing))
        bad["train"]["0"].append(entry)
        (root / "data.json").write_text(json.dumps(bad))
        _expect(config, "rsna", root, rf"data.json lists '{re.escape(entry)}', which is not a "
                                      r"file name inside .*images: names must be relative")
    isic = tmp_path / "isic"
    fixtures.make_isic(isic)
    csv_path = isic / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    rows = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(rows + ["../../outside/x,1.0,0,0,0,0,0,0"]) + "\n")
    _expect(config, "isic", isic, r"Test_GroundTruth.csv lists '../../outside/x.jpg'")


def test_isic_csv_with_a_byte_order_mark_reads_as_without(config, tmp_path):
    fixtures.make_isic(tmp_path / "plain")
    fixtures.make_isic(tmp_path / "bom")
    for part in ("Training", "Test"):
        stem = f"ISIC2018_Task3_{part}_GroundTruth"
        path = tmp_path / "bom" / stem / f"{stem}.csv"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as Excel saves UTF-8
    config.channels = 3
    with_bom = _load(config, "isic", tmp_path / "bom", channels=3)
    plain = _load(config, "isic", tmp_path / "plain", channels=3)
    np.testing.assert_array_equal(with_bom.test_labels, plain.test_labels)
    np.testing.assert_array_equal(with_bom.test_images, plain.test_images)


def test_channels_come_from_the_dataset_unless_set(config):
    for dataset, channels in (("c16", 3), ("brats", 1), ("phantom", 1), ("folder", 1)):
        config.dataset, config.channels = dataset, 0
        assert input_pipeline.resolve_channels(config).channels == channels
    config.dataset, config.channels = "folder", 3
    assert input_pipeline.resolve_channels(config).channels == 3
    config.dataset, config.channels = "arrays", 0
    rgb, gray = np.zeros((2, 5, 5, 3)), np.zeros((2, 5, 5))
    assert input_pipeline.resolve_channels(config, rgb).channels == 3
    assert input_pipeline.resolve_channels(config, gray).channels == 1


def test_empty_split(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_medad(root, n_train=0)
    _expect(config, "rsna", root, r"The train split of dataset 'rsna' in .* is empty")


def test_undecodable_image(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_c16(root)
    (root / "test" / "Ungood" / "patch_1.png").write_bytes(b"not an image")
    config.channels = 3
    _expect(config, "c16", root, r"Image .*Ungood/patch_1.png cannot be decoded")


def test_brats_tumour_without_mask_or_with_wrong_size(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_brats(root)
    mask = root / "test" / "annotation" / "BraTS_t002_seg_2.png"
    os.remove(mask)
    _expect(config, "brats", root, r"Tumour slice .*BraTS_t002_flair_2.png has no mask "
                                   r".*BraTS_t002_seg_2.png")
    fixtures.save(str(mask), np.zeros((10, 12), np.uint8))
    _expect(config, "brats", root, r"Mask .*BraTS_t002_seg_2.png is 12x10 but its image "
                                   r".*BraTS_t002_flair_2.png is 96x80")


def test_isic_csv_without_columns(config, tmp_path):
    root = tmp_path / "raw"
    fixtures.make_isic(root)
    csv_path = root / "ISIC2018_Task3_Test_GroundTruth" / "ISIC2018_Task3_Test_GroundTruth.csv"
    csv_path.write_text("name,label\nISIC_1,1\n")
    _expect(config, "isic", root, r"Test_GroundTruth.csv needs the columns 'image' and 'NV' "
                                  r"\(found \['label', 'name'\]\)")


def test_folder_needs_data_dir_and_masks_for_abnormal(config, tmp_path):
    config.dataset, config.data_dir = "folder", ""
    with pytest.raises(UserError, match=r"'folder' needs --config.data_dir"):
        input_pipeline.load(config)
    root = tmp_path / "raw"
    fixtures.make_medad(root, masks=True)
    os.remove(root / "masks" / "test_1_0.png")
    _expect(config, "folder", root, r"Abnormal test image test_1_0.png has no mask")


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("name,make,pixel", [("brats", fixtures.make_brats, True),
                                             ("rsna", fixtures.make_medad, False)])
def test_the_dataset_configs_run_end_to_end_on_the_fixtures(tmp_path, tfds_dir, capsys, name,
                                                            make, pixel):
    """configs/<dataset>.py as it is (the paper's AE at 64x64) for one epoch."""
    import importlib

    make(tmp_path / "raw", n_train=20)
    config = importlib.import_module(f"configs.{name}").get_config()
    config.data_dir, config.tfds_dir = str(tmp_path / "raw"), tfds_dir
    config.num_epochs = 1
    summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
    row = summary["metrics"][0]
    assert summary["num_params"] == 2_351_184  # the reference's count
    assert ("pixel_ap" in row and "dice_best" in row) == pixel
    for key in ("auroc", "pixel_auroc", "pixel_ap", "dice_best", "dice_best_exact"):
        assert key not in row or 0 <= row[key] <= 1
    assert "final: member=0" in capsys.readouterr().out
