"""`phantom`: a procedural brain-MRI-like dataset that exists on every machine.

Each image is an axial slice of a synthetic head: skull ring, a CSF rim, grey
matter cortex with gyral folds, darker white matter, an interhemispheric
fissure, two lateral ventricles, smooth tissue texture, a bias field and
acquisition noise. Subjects vary in position, rotation, head size and shape,
ventricle size, contrasts and noise. Test anomalies are one to three
tumour-like lesions of varied size (about 2.5 to 10 pixels radius at 64x64),
shape, polarity (mostly FLAIR-hyperintense), strength and texture, each with
a pixel mask. Generation is vectorised numpy and seeded: the same arguments
always give the same bytes.
"""

import numpy as np

_CHUNK = 512


def _smooth_noise(rng, shape, sigma):
    """Gaussian random field with unit std, correlation length `sigma` (in [-1,1] units)."""
    _, h, w = shape
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(h)[:, None] * h / 2.0
    fx = np.fft.rfftfreq(w)[None, :] * w / 2.0
    filt = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=(h, w))
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-8)


def _uniform(rng, low, high, n):
    return rng.uniform(low, high, n)[:, None, None]


def _head(rng, n, size):
    """Normal slices in [0, 1], shape [n, size, size], plus head geometry for lesions."""
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(grid, grid, indexing="ij")
    cx, cy = _uniform(rng, -0.06, 0.06, n), _uniform(rng, -0.06, 0.06, n)
    theta = _uniform(rng, -0.2, 0.2, n)
    u = np.cos(theta) * (x - cx) + np.sin(theta) * (y - cy)
    v = -np.sin(theta) * (x - cx) + np.cos(theta) * (y - cy)
    ax = _uniform(rng, 0.68, 0.84, n)
    ay = ax * _uniform(rng, 1.08, 1.24, n)
    phi = np.arctan2(v, u)
    wobble = 1.0 + 0.03 * np.sin(3 * phi + _uniform(rng, 0, 2 * np.pi, n))
    r = np.sqrt((u / ax) ** 2 + (v / ay) ** 2) / wobble

    gm = _uniform(rng, 0.42, 0.6, n)
    wm = gm - _uniform(rng, 0.05, 0.2, n)
    folds = (0.05 * np.sin(9 * phi + _uniform(rng, 0, 6.3, n))
             + 0.03 * np.sin(14 * phi + _uniform(rng, 0, 6.3, n)))
    wm_edge = _uniform(rng, 0.62, 0.74, n) + folds
    brain = r < 0.9
    img = np.where(r < wm_edge, wm, gm) * brain
    img = np.where((r >= 0.9) & (r < 0.93), 0.06, img)
    img = np.where((r >= 0.93) & (r < 1.0), _uniform(rng, 0.55, 0.85, n), img)

    fissure = (np.abs(u) < 0.022) & (np.abs(v / ay) > _uniform(rng, 0.25, 0.4, n)) & brain
    img = np.where(fissure, 0.08, img)
    vent_x, vent_y = ax * _uniform(rng, 0.1, 0.16, n), ay * _uniform(rng, -0.12, 0.05, n)
    vent_rx, vent_ry = ax * _uniform(rng, 0.05, 0.13, n), ay * _uniform(rng, 0.12, 0.3, n)
    for side in (-1.0, 1.0):
        du, dv = u - side * vent_x, v - vent_y
        tilt = side * 0.35
        pu = np.cos(tilt) * du + np.sin(tilt) * dv
        pv = -np.sin(tilt) * du + np.cos(tilt) * dv
        img = np.where((pu / vent_rx) ** 2 + (pv / vent_ry) ** 2 < 1.0, 0.07, img)

    texture = _smooth_noise(rng, (n, size, size), 0.05) * _uniform(rng, 0.02, 0.06, n)
    img = img * (1.0 + texture * brain)
    bias = 1.0 + _uniform(rng, -0.08, 0.08, n) * x + _uniform(rng, -0.08, 0.08, n) * y
    img = img * bias
    noise = rng.standard_normal((n, size, size)) * _uniform(rng, 0.01, 0.03, n)
    img = np.abs(img + noise)
    geometry = {"u": u, "v": v, "ax": ax, "ay": ay, "r": r}
    return img, geometry


def _lesions(rng, img, geometry):
    """Adds 1-3 lesions inside the brain; returns (images, masks)."""
    n, size, _ = img.shape
    u, v, ax, ay, r = (geometry[k] for k in ("u", "v", "ax", "ay", "r"))
    mask = np.zeros(img.shape, bool)
    count = rng.integers(1, 4, n)
    pixel = 2.0 / size
    for k in range(3):
        active = (count > k)[:, None, None]
        rad = np.sqrt(_uniform(rng, 0.0, 0.7, n)) * 0.75
        ang = _uniform(rng, 0, 2 * np.pi, n)
        lu, lv = rad * np.cos(ang) * ax, rad * np.sin(ang) * ay
        radius = np.exp(_uniform(rng, np.log(0.08), np.log(0.3), n))
        du, dv = u - lu, v - lv
        phi = np.arctan2(dv, du)
        shape = (1.0 + 0.25 * np.sin(3 * phi + _uniform(rng, 0, 6.3, n))
                 + 0.12 * np.sin(5 * phi + _uniform(rng, 0, 6.3, n)))
        dist = np.sqrt(du**2 + dv**2) / (radius * shape)
        profile = np.clip((1.0 - dist) * radius / pixel + 0.5, 0.0, 1.0) * (r < 0.9)
        polarity = np.where(rng.random(n) < 0.8, 1.0, -0.6)[:, None, None]
        strength = _uniform(rng, 0.2, 0.5, n) * polarity
        texture = 1.0 + 0.3 * _smooth_noise(rng, (n, size, size), 0.04)
        img = img + active * profile * strength * texture
        mask |= active & (profile > 0.5)
    return np.clip(img, 0.0, 1.0), mask


def generate(num: int, image_size: int, seed: int, abnormal: bool):
    """`num` slices: (uint8 images [num, size, size, 1], uint8 {0,1} masks [num, size, size])."""
    images = np.zeros((num, image_size, image_size, 1), np.uint8)
    masks = np.zeros((num, image_size, image_size), np.uint8)
    rng = np.random.default_rng(seed)
    for start in range(0, num, _CHUNK):
        n = min(_CHUNK, num - start)
        img, geometry = _head(rng, n, image_size)
        if abnormal:
            img, mask = _lesions(rng, img, geometry)
            masks[start:start + n] = mask
        images[start:start + n, ..., 0] = np.round(np.clip(img, 0.0, 1.0) * 255.0)
    return images, masks
