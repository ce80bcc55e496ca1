"""The embedded dataset: deterministic, in range, anomalies masked where they are."""

import numpy as np

from ae4ad_jax.data import phantom
from ae4ad_jax.data import pipeline as input_pipeline


def test_generation_is_deterministic_and_seeded():
    a, _ = phantom.generate(20, 32, seed=5, abnormal=False)
    b, _ = phantom.generate(20, 32, seed=5, abnormal=False)
    c, _ = phantom.generate(20, 32, seed=6, abnormal=False)
    assert a.dtype == np.uint8 and a.shape == (20, 32, 32, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_subjects_vary_and_look_like_heads():
    images, masks = phantom.generate(64, 64, seed=0, abnormal=False)
    assert masks.max() == 0
    x = images[..., 0] / 255.0
    assert x[:, 0, 0].max() < 0.2  # background corner is dark
    assert x[:, 32, 28:36].mean() > 0.1  # the head covers the centre
    assert np.std(x.reshape(64, -1).mean(1)) > 0.01  # brightness varies between subjects
    assert np.abs(np.corrcoef(x[0].ravel(), x[1].ravel())[0, 1]) < 0.98


def test_lesions_are_masked_and_change_the_image_there():
    seed = 3
    normal, _ = phantom.generate(50, 64, seed=seed, abnormal=False)
    abnormal, masks = phantom.generate(50, 64, seed=seed, abnormal=True)
    sizes = masks.reshape(50, -1).sum(1)
    assert sizes.min() > 0 and sizes.max() < 0.25 * 64 * 64
    assert len(np.unique(sizes)) > 30  # sizes vary
    # Same seed gives the same heads: the images differ where the lesions are.
    diff = np.abs(abnormal[..., 0].astype(int) - normal[..., 0].astype(int))
    inside = diff[masks == 1].mean()
    outside = diff[masks == 0].mean()
    assert inside > 10 * max(outside, 0.1)


def test_tfds_builder_round_trip(test_config):
    config = test_config
    data = input_pipeline.load(config)
    p = config.phantom
    assert data.train_images.shape == (p.num_train, 32, 32, 1)
    assert data.test_images.shape == (p.num_test_normal + p.num_test_abnormal, 32, 32, 1)
    assert data.test_labels.sum() == p.num_test_abnormal
    assert data.test_masks[data.test_labels == 0].max() == 0
    assert data.test_masks[data.test_labels == 1].reshape(p.num_test_abnormal, -1).max(1).min() == 1
    expected, _ = phantom.generate(p.num_train, 32, seed=int(
        np.random.SeedSequence(p.seed).generate_state(3)[0]), abnormal=False)
    np.testing.assert_array_equal(data.train_images, expected)  # stored order is restored
