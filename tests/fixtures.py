"""Tiny raw datasets written in the exact published layouts, with known lesions.

Images are 96x80 (width x height), so resizing to 64x64 is non-trivial. Abnormal
images carry a bright square at rows 20..59, columns 24..71, which lands at rows
16..47, columns 16..47 of a 64x64 image (exact for nearest-neighbour masks).
"""

import csv
import json
import os

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 96, 80
LESION = (slice(20, 60), slice(24, 72))
LESION_64 = (slice(16, 48), slice(16, 48))


def _image(rng, abnormal, rgb=False):
    base = rng.integers(30, 120, (HEIGHT, WIDTH)).astype(np.uint8)
    if abnormal:
        base[LESION] = 250
    if rgb:
        return np.stack([base, base // 2, 255 - base], axis=-1)
    return base


def _mask(value=255):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[LESION] = value
    return mask


def save(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path)


def make_medad(root, n_train=6, n_normal=3, n_abnormal=4, seed=0, masks=False):
    """RSNA / VinCXR / BrainTumor / LAG layout (and `folder` with masks=True)."""
    rng = np.random.default_rng(seed)
    names = {"train": {"0": []}, "test": {"0": [], "1": []}}
    for split, label, count in (("train", "0", n_train), ("test", "0", n_normal),
                                ("test", "1", n_abnormal)):
        for i in range(count):
            name = f"{split}_{label}_{i}.png"
            save(os.path.join(root, "images", name), _image(rng, label == "1"))
            if masks and label == "1":
                save(os.path.join(root, "masks", name), _mask())
            names[split][label].append(name)
    with open(os.path.join(root, "data.json"), "w") as f:
        json.dump(names, f)
    return names


def make_brats(root, n_train=6, n_normal=3, n_abnormal=4, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        save(os.path.join(root, "train", f"BraTS_{i:03d}_flair_{i}.png"), _image(rng, False))
    for i in range(n_normal):
        save(os.path.join(root, "test", "normal", f"BraTS_n{i:03d}_flair_{i}.png"),
             _image(rng, False))
    for i in range(n_abnormal):
        save(os.path.join(root, "test", "tumor", f"BraTS_t{i:03d}_flair_{i}.png"),
             _image(rng, True))
        save(os.path.join(root, "test", "annotation", f"BraTS_t{i:03d}_seg_{i}.png"), _mask())


def make_isic(root, n_train=6, n_other=2, n_normal=3, n_abnormal=4, seed=0):
    """ISIC 2018 task 3: RGB jpg inputs and one-hot ground-truth CSVs (NV = normal)."""
    rng = np.random.default_rng(seed)
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    for part, normal, abnormal in (("Training", n_train, n_other), ("Test", n_normal, n_abnormal)):
        stem = f"ISIC2018_Task3_{part}"
        rows = []
        for i in range(normal + abnormal):
            name = f"ISIC_{part[:2]}{i:05d}"
            is_abnormal = i >= normal
            save(os.path.join(root, f"{stem}_Input", name + ".jpg"),
                 _image(rng, is_abnormal, rgb=True))
            label = "MEL" if is_abnormal else "NV"
            rows.append([name] + [f"{float(c == label):.1f}" for c in classes])
        path = os.path.join(root, f"{stem}_GroundTruth", f"{stem}_GroundTruth.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image"] + classes)
            writer.writerows(rows)


def make_c16(root, n_train=6, n_normal=3, n_abnormal=4, seed=0):
    rng = np.random.default_rng(seed)
    for folder, count, abnormal in (("train/good", n_train, False),
                                    ("test/good", n_normal, False),
                                    ("test/Ungood", n_abnormal, True)):
        for i in range(count):
            save(os.path.join(root, folder, f"patch_{i}.png"), _image(rng, abnormal, rgb=True))
