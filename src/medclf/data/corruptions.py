"""MedMNIST-C's image corruptions (Di Salvo, Doerrich and Ledig, 2024), five severities each.

The per-dataset lists and parameters are those of MedMNIST-C's public code
(github.com/francescodisalvo05/medmnistc-api, ``medmnistc/corruptions/registry.py``); each
function below follows its definition there. Its package is not used: it needs torchvision,
OpenCV, ImageMagick (Wand) and pinned scikit-image and medmnist versions. Where MedMNIST-C calls
Pillow (pixelate, JPEG, brightness, contrast, torchvision's gamma on a PIL image), Pillow is
called here the same way; the rest is re-implemented with NumPy and SciPy.

As in MedMNIST-C, every image is corrupted as RGB (a grayscale one is repeated in three
channels) and converted back to grayscale by Pillow's formula afterwards, so a noise drawn per
channel is mixed as theirs is. MedMNIST-C corrupts the 224x224 images; applied to another size,
the same pixel parameters make a different (at 28x28, a stronger) corruption.
"""

from __future__ import annotations

import io
import zlib

import numpy as np

from medclf.errors import ConfigError

SEVERITIES = (1, 2, 3, 4, 5)
MEDMNISTC_SIZE = 224  # the image side MedMNIST-C corrupts and publishes
SOURCE = "MedMNIST-C (Di Salvo et al. 2024), github.com/francescodisalvo05/medmnistc-api"


def _zoom(top: float, step: float) -> tuple[float, ...]:
    return tuple(np.arange(1, top, step))


# dataset -> corruption -> its parameter at severities 1..5 (MedMNIST-C's registry.py; where a
# list there has six entries, only the first five are ever used, as there)
TABLE: dict[str, dict[str, tuple]] = {
    "pathmnist": {
        "pixelate": (0.8, 0.6, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((3, 0.1), (4, 0.1), (5, 0.2), (6, 0.2), (7, 0.3)),
        "motion_blur": ((5, 5), (10, 5), (15, 5), (15, 8), (15, 12)),
        "brightness_up": (1.1, 1.15, 1.2, 1.22, 1.25),
        "brightness_down": (0.85, 0.80, 0.75, 0.72, 0.70),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
        "saturate": (0.05, 0.10, 0.15, 0.20, 0.25),
        "stain_deposit": (1, 2, 3, 4, 5),
        "bubble": ((7, 15), (10, 15), (12, 15), (15, 20), (17, 25)),
    },
    "bloodmnist": {
        "pixelate": (0.6, 0.5, 0.40, 0.30, 0.25),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "defocus_blur": ((2, 0.01), (3, 0.1), (4, 0.1), (5, 0.1), (6, 0.1)),
        "motion_blur": ((3, 3), (5, 5), (10, 5), (10, 7), (10, 9)),
        "brightness_up": (1.1, 1.2, 1.3, 1.35, 1.4),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.15, 1.2, 1.25, 1.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "saturate": (0.05, 0.10, 0.15, 0.17, 0.20),
        "stain_deposit": (1, 2, 3, 3, 3),
        "bubble": ((5, 10), (7, 10), (10, 10), (12, 12), (15, 12)),
    },
    "dermamnist": {
        "pixelate": (0.7, 0.5, 0.40, 0.30, 0.25),
        "jpeg_compression": (30, 20, 15, 10, 7),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "shot_noise": (60, 25, 18, 10, 5),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        "motion_blur": ((10, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": (
            _zoom(1.11, 0.01),
            _zoom(1.16, 0.01),
            _zoom(1.21, 0.02),
            _zoom(1.26, 0.02),
            _zoom(1.31, 0.03),
        ),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "black_corner": (1.10, 1.05, 1.00, 0.90, 0.95),
        "characters": ((1, 6, 0.14), (2, 7, 0.15), (3, 8, 0.16), (4, 9, 0.17), (6, 10, 0.18)),
    },
    "retinamnist": {
        "pixelate": (0.8, 0.60, 0.50, 0.40, 0.35),
        "jpeg_compression": (30, 25, 20, 10, 5),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "defocus_blur": ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)),
        "motion_blur": ((8, 5), (15, 5), (15, 8), (15, 12), (20, 15)),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "tissuemnist": {
        "pixelate": (0.40, 0.30, 0.20, 0.15, 0.10),
        "jpeg_compression": (25, 20, 15, 10, 7),
        "impulse_noise": (0.01, 0.015, 0.02, 0.025, 0.03),
        "gaussian_blur": (13, 15, 17, 21, 25),
        "brightness_up": (1.3, 1.4, 1.5, 1.6, 1.7),
        "brightness_down": (0.8, 0.7, 0.6, 0.5, 0.4),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "octmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (30, 15, 10, 7, 5),
        "speckle_noise": (0.15, 0.30, 0.40, 0.50, 0.60),
        "defocus_blur": ((0.5, 0.6), (1, 0.5), (1.5, 0.1), (2.0, 0.5), (2.5, 0.1)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "contrast_down": (0.6, 0.4, 0.3, 0.2, 0.15),
    },
    "breastmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "speckle_noise": (0.10, 0.15, 0.20, 0.25, 0.30),
        "motion_blur": ((5, 5), (9, 7), (9, 10), (13, 10), (17, 12)),
        "brightness_up": (1.4, 1.5, 1.6, 1.8, 2.0),
        "brightness_down": (0.55, 0.5, 0.45, 0.4, 0.3),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "chestmnist": {
        "pixelate": (0.30, 0.25, 0.20, 0.15, 0.10),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.08, 0.12, 0.18, 0.26),
        "speckle_noise": (0.05, 0.15, 0.2, 0.35, 0.45),
        "impulse_noise": (0.01, 0.03, 0.06, 0.09, 0.17),
        "shot_noise": (60, 25, 18, 10, 5),
        "gaussian_blur": (3, 5, 7, 9, 11),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
        "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
    "pneumoniamnist": {
        "pixelate": (0.8, 0.7, 0.6, 0.5, 0.40),
        "jpeg_compression": (50, 30, 15, 10, 7),
        "gaussian_noise": (0.04, 0.05, 0.06, 0.07, 0.08),
        "speckle_noise": (0.05, 0.07, 0.10, 0.15, 0.20),
        "impulse_noise": (0.005, 0.01, 0.013, 0.017, 0.02),
        "shot_noise": (300, 200, 150, 100, 80),
        "gaussian_blur": (3, 5, 7, 9, 11),
        "brightness_up": (1.1, 1.2, 1.3, 1.4, 1.5),
        "brightness_down": (0.9, 0.8, 0.7, 0.6, 0.5),
        "contrast_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "contrast_down": (0.9, 0.8, 0.7, 0.6, 0.4),
        "gamma_corr_up": (1.1, 1.2, 1.3, 1.4, 1.6),
        "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
    },
}
_ORGAN = {
    "pixelate": (0.7, 0.6, 0.5, 0.40, 0.35),
    "jpeg_compression": (50, 30, 15, 10, 7),
    "gaussian_noise": (0.04, 0.08, 0.12, 0.16, 0.20),
    "speckle_noise": (0.05, 0.10, 0.20, 0.30, 0.40),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.08),
    "shot_noise": (200, 100, 50, 25, 15),
    "gaussian_blur": (11, 13, 15, 17, 21),
    "brightness_up": (1.2, 1.3, 1.4, 1.5, 1.6),
    "brightness_down": (0.8, 0.75, 0.7, 0.65, 0.60),
    "contrast_up": (1.3, 1.4, 1.6, 1.7, 1.8),
    "contrast_down": (0.8, 0.7, 0.6, 0.55, 0.5),
    "gamma_corr_up": (1.3, 1.4, 1.6, 1.8, 2.0),
    "gamma_corr_down": (0.9, 0.8, 0.7, 0.6, 0.4),
}
TABLE.update({name: dict(_ORGAN) for name in ("organamnist", "organcmnist", "organsmnist")})

# MedMNIST-C's own corruptions that need its bundled ink masks (stain_deposit) or OpenCV's
# Hershey font (characters), or Pillow drawing not re-implemented yet (bubble): refused by name.
NOT_IMPLEMENTED = {
    "stain_deposit": "it needs MedMNIST-C's bundled ink masks",
    "characters": "it draws OpenCV's Hershey font",
    "bubble": "it is not re-implemented in medclf yet",
}


# --- the corruptions, on (n, H, W, 3) uint8 RGB batches ---------------------------------------


def _per_image(fn):
    """A Pillow corruption of one RGB image, applied to each image of a batch."""

    def apply(x, param, rng):
        from PIL import Image

        return np.stack([np.asarray(fn(Image.fromarray(img), param, rng)) for img in x])

    return apply


@_per_image
def pixelate(img, factor, rng):
    from PIL import Image

    w, h = img.size
    small = img.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.BOX)
    return small.resize((w, h), Image.BOX)


@_per_image
def jpeg_compression(img, quality, rng):
    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(buf).convert("RGB")


@_per_image
def brightness(img, factor, rng):
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(img).enhance(factor)


@_per_image
def contrast(img, factor, rng):
    from PIL import ImageEnhance

    return ImageEnhance.Contrast(img).enhance(factor)


def gamma(x, g, rng):
    """torchvision's adjust_gamma on a PIL image (gain 1): its lookup table."""
    table = np.array([int((255 + 1 - 1e-3) * pow(v / 255.0, g)) for v in range(256)])
    return table.astype(np.uint8)[x]


def _to_uint8(unit):
    """[0, 1] floats -> uint8, truncated as MedMNIST-C's ``(x * 255).astype(np.uint8)``."""
    return (np.clip(unit, 0, 1) * 255).astype(np.uint8)


def gaussian_noise(x, std, rng):
    x = x / 255.0
    return _to_uint8(x + rng.normal(scale=std, size=x.shape))


def speckle_noise(x, std, rng):
    x = x / 255.0
    return _to_uint8(x + x * rng.normal(scale=std, size=x.shape))


def impulse_noise(x, amount, rng):
    """scikit-image's random_noise(mode='s&p', amount, salt_vs_pepper=0.5)."""
    x = x / 255.0
    flipped = rng.random(x.shape) <= amount
    salted = rng.random(x.shape) <= 0.5
    x[flipped & salted] = 1.0
    x[flipped & ~salted] = 0.0
    return _to_uint8(x)


def shot_noise(x, mult, rng):
    return _to_uint8(rng.poisson(x / 255.0 * mult) / mult)


def gaussian_kernel(size: int) -> np.ndarray:
    """torchvision's gaussian_blur kernel: its default sigma for the kernel size."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    t = np.linspace(-(size - 1) / 2, (size - 1) / 2, size)
    pdf = np.exp(-0.5 * (t / sigma) ** 2)
    return pdf / pdf.sum()


def gaussian_blur(x, size, rng):
    """torchvision's gaussian_blur: separable, reflect padding, rounded back to uint8."""
    from scipy.ndimage import correlate1d

    k = gaussian_kernel(size).astype(np.float32)
    out = x.astype(np.float32)
    for axis in (1, 2):
        out = correlate1d(out, k, axis=axis, mode="mirror")  # mirror: torch's "reflect"
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def motion_kernel(radius: float, sigma: float, angle: float) -> tuple[np.ndarray, list]:
    """ImageMagick's MotionBlurImage: a one-sided Gaussian of 2*ceil(radius)+1 taps, each tap
    a (dy, dx) pixel offset along ``angle`` degrees."""
    width = int(2 * np.ceil(radius) + 1)
    i = np.arange(width)
    kernel = np.exp(-(i * i) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    px, py = width * np.sin(np.radians(angle)), width * np.cos(np.radians(angle))
    hyp = np.hypot(px, py)
    offsets = [(int(np.ceil(j * px / hyp - 0.5)), int(np.ceil(j * py / hyp - 0.5))) for j in i]
    return kernel, offsets


def motion_blur(x, radius_sigma, rng):
    """ImageMagick's motion blur (what MedMNIST-C calls through Wand), at an angle drawn
    uniformly in [-45, 45] degrees per image; pixels beyond the edge repeat the edge."""
    radius, sigma = radius_sigma
    n, h, w = x.shape[:3]
    out = np.empty_like(x)
    rows, cols = np.arange(h), np.arange(w)
    for k, angle in enumerate(rng.uniform(-45, 45, size=n)):
        kernel, offsets = motion_kernel(radius, sigma, angle)
        acc = np.zeros(x.shape[1:], dtype=np.float64)
        for weight, (dy, dx) in zip(kernel, offsets, strict=True):
            acc += weight * x[k][np.clip(rows + dy, 0, h - 1)][:, np.clip(cols + dx, 0, w - 1)]
        out[k] = np.clip(np.rint(acc), 0, 255).astype(np.uint8)
    return out


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """MedMNIST-C's (ImageNet-C's) defocus disk, smoothed by OpenCV's 3x3 (5x5 beyond radius
    8) GaussianBlur of sigma ``alias_blur``."""
    from scipy.ndimage import correlate1d

    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    t = np.arange(-half, half + 1)
    X, Y = np.meshgrid(t, t)
    disk = ((X**2 + Y**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    g = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur**2))
    g /= g.sum()
    for axis in (0, 1):
        disk = correlate1d(disk, g, axis=axis, mode="mirror")  # OpenCV's BORDER_REFLECT_101
    return disk


def defocus_blur(x, radius_alias, rng):
    from scipy.ndimage import correlate

    kernel = disk_kernel(*radius_alias)
    out = np.stack(
        [
            np.stack([correlate(img[..., c] / 255.0, kernel, mode="mirror") for c in range(3)], -1)
            for img in x
        ]
    )
    return _to_uint8(out)


def _clipped_zoom(img, factor):
    from scipy.ndimage import zoom

    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    img = zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim : trim + h, trim : trim + h]


def zoom_blur(x, factors, rng):
    out = []
    for img in x / 255.0:
        acc = img + sum(_clipped_zoom(img, f) for f in factors)
        out.append(acc / (len(factors) + 1))
    return _to_uint8(np.stack(out))


def saturate(x, amount, rng):
    """Saturation raised by ``amount`` in HSV (matplotlib's HSV is scikit-image's)."""
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    hsv = rgb_to_hsv(x / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] + amount, 0, 1)
    return _to_uint8(hsv_to_rgb(hsv))


def black_corner(x, multiplier, rng):
    """Everything outside a centred disk of radius ``multiplier`` x the half side set black."""
    h, w = x.shape[1:3]
    cy, cx = h // 2, w // 2
    radius = int(min(cx, cy, w - cx, h - cy) * multiplier)
    Y, X = np.ogrid[:h, :w]
    out = x.copy()
    out[:, (X - cx) ** 2 + (Y - cy) ** 2 > radius**2] = 0
    return out


FUNCTIONS = {
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "gaussian_noise": gaussian_noise,
    "speckle_noise": speckle_noise,
    "impulse_noise": impulse_noise,
    "shot_noise": shot_noise,
    "gaussian_blur": gaussian_blur,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "zoom_blur": zoom_blur,
    "brightness_up": brightness,
    "brightness_down": brightness,
    "contrast_up": contrast,
    "contrast_down": contrast,
    "gamma_corr_up": gamma,
    "gamma_corr_down": gamma,
    "saturate": saturate,
    "black_corner": black_corner,
}


# --- the public interface ------------------------------------------------------------------------


def covered(dataset: str) -> bool:
    return dataset.lower() in TABLE


def corruptions_of(dataset: str) -> dict[str, tuple]:
    """MedMNIST-C's corruptions of ``dataset`` (name -> five parameters); one ConfigError for a
    dataset it does not cover."""
    if not covered(dataset):
        raise ConfigError(
            f"MedMNIST-C has no corruptions for '{dataset}'; it covers the 2D datasets "
            f"{', '.join(TABLE)}"
        )
    return TABLE[dataset.lower()]


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16."""
    rgb = rgb.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(
        np.uint8
    )


def rng_for(seed: int, corruption: str, severity: int) -> np.random.Generator:
    """One generator per (seed, corruption, severity): each cell reproducible on its own."""
    return np.random.default_rng([seed, zlib.crc32(corruption.encode()), severity])


def corrupt(
    images: np.ndarray, dataset: str, corruption: str, severity: int, seed: int = 0
) -> np.ndarray:
    """``images`` (n, H, W) or (n, H, W, 3) uint8 with MedMNIST-C's ``corruption`` of
    ``dataset`` at ``severity`` 1-5; the same shape and dtype back."""
    table = corruptions_of(dataset)
    if corruption not in table:
        raise ConfigError(
            f"'{corruption}' is not one of MedMNIST-C's corruptions of {dataset}; choose "
            f"one of {', '.join(table)}"
        )
    if corruption in NOT_IMPLEMENTED:
        raise ConfigError(f"{corruption} is not available in medclf: {NOT_IMPLEMENTED[corruption]}")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity {severity} is out of range; give 1 to 5")
    gray = images.ndim == 3
    rgb = np.repeat(images[..., None], 3, axis=-1) if gray else images
    param = table[corruption][severity - 1]
    out = FUNCTIONS[corruption](rgb, param, rng_for(seed, corruption, severity))
    return to_gray(out) if gray else out


# MedMNIST-C's reference: AlexNet's balanced errors at 224x224 (medmnistc/utils/baselines.py),
# the clean test error and each corruption's mean over its five severities. The summary
# normalises by them, as MedMNIST-C's Evaluator does.
ALEXNET = {
    "breastmnist": (
        0.14536340852130336,
        {
            "pixelate": 0.46127819548872184,
            "jpeg_compression": 0.2986215538847118,
            "speckle_noise": 0.38709273182957393,
            "motion_blur": 0.25902255639097743,
            "brightness_up": 0.3197994987468672,
            "brightness_down": 0.21127819548872181,
            "contrast_down": 0.15864661654135334,
        },
    ),
    "pneumoniamnist": (
        0.10085470085470083,
        {
            "pixelate": 0.22102564102564104,
            "jpeg_compression": 0.2798290598290598,
            "gaussian_noise": 0.4414529914529915,
            "speckle_noise": 0.3457264957264957,
            "impulse_noise": 0.4581196581196581,
            "shot_noise": 0.4106837606837607,
            "gaussian_blur": 0.2730769230769231,
            "brightness_up": 0.14649572649572645,
            "brightness_down": 0.2782051282051282,
            "contrast_up": 0.09529914529914527,
            "contrast_down": 0.23743589743589744,
            "gamma_corr_up": 0.09606837606837607,
            "gamma_corr_down": 0.16641025641025642,
        },
    ),
    "chestmnist": (
        0.2839064387513035,
        {
            "pixelate": 0.44895070087295996,
            "jpeg_compression": 0.34575690815860566,
            "gaussian_noise": 0.47688317292098203,
            "speckle_noise": 0.45687894795025785,
            "impulse_noise": 0.48553631547337917,
            "shot_noise": 0.4926966815396587,
            "gaussian_blur": 0.3176801263607164,
            "brightness_up": 0.2993721457134663,
            "brightness_down": 0.29711530406534037,
            "contrast_up": 0.28751004051276824,
            "contrast_down": 0.2954742427570406,
            "gamma_corr_up": 0.287462117104012,
            "gamma_corr_down": 0.2891642074561852,
        },
    ),
    "octmnist": (
        0.20199999999999996,
        {
            "pixelate": 0.3124,
            "jpeg_compression": 0.29640000000000005,
            "speckle_noise": 0.386,
            "defocus_blur": 0.3084,
            "motion_blur": 0.4892,
            "contrast_down": 0.4196,
        },
    ),
    "retinamnist": (
        0.5582064849927977,
        {
            "pixelate": 0.6017003263074344,
            "jpeg_compression": 0.6795223564688244,
            "gaussian_noise": 0.7040832524914012,
            "speckle_noise": 0.6135258841167651,
            "defocus_blur": 0.6882905018079196,
            "motion_blur": 0.7075760943057883,
            "brightness_down": 0.5844791133844842,
            "contrast_down": 0.6092882382338243,
        },
    ),
    "tissuemnist": (
        0.3917787199385978,
        {
            "pixelate": 0.49272908707597907,
            "jpeg_compression": 0.508070087070269,
            "impulse_noise": 0.7970869222746931,
            "gaussian_blur": 0.4805143361974326,
            "brightness_up": 0.4618274173802247,
            "brightness_down": 0.51981943234386,
            "contrast_up": 0.5026233641102424,
            "contrast_down": 0.5369342652194591,
        },
    ),
    "organamnist": (
        0.050053710403475504,
        {
            "pixelate": 0.07589728744538755,
            "jpeg_compression": 0.10233182799848468,
            "gaussian_noise": 0.558867512509986,
            "speckle_noise": 0.5008977196696448,
            "impulse_noise": 0.6005122792556206,
            "shot_noise": 0.5704549211261293,
            "gaussian_blur": 0.23340661727240267,
            "brightness_up": 0.14763547790322412,
            "brightness_down": 0.2646445055204496,
            "contrast_up": 0.10977873034814234,
            "contrast_down": 0.1268424696095805,
            "gamma_corr_up": 0.10360009998047674,
            "gamma_corr_down": 0.10577092296366888,
        },
    ),
    "organcmnist": (
        0.07596783210891289,
        {
            "pixelate": 0.12161270665759313,
            "jpeg_compression": 0.10754481922990186,
            "gaussian_noise": 0.5736544084235357,
            "speckle_noise": 0.5130960298987614,
            "impulse_noise": 0.5997780092763433,
            "shot_noise": 0.5492477253691926,
            "gaussian_blur": 0.316895537101905,
            "brightness_up": 0.16011849294420644,
            "brightness_down": 0.2324271692594097,
            "contrast_up": 0.09991836613387597,
            "contrast_down": 0.15327395964015147,
            "gamma_corr_up": 0.1426418229218433,
            "gamma_corr_down": 0.12390902424472901,
        },
    ),
    "organsmnist": (
        0.24300485476777922,
        {
            "pixelate": 0.31259415418134306,
            "jpeg_compression": 0.26996994867350865,
            "gaussian_noise": 0.5889124203738291,
            "speckle_noise": 0.5450100158501043,
            "impulse_noise": 0.6010108858901404,
            "shot_noise": 0.5519125643755777,
            "gaussian_blur": 0.4466645657200248,
            "brightness_up": 0.3598501969979232,
            "brightness_down": 0.3592866403894267,
            "contrast_up": 0.2871702451645464,
            "contrast_down": 0.3128243336438499,
            "gamma_corr_up": 0.30253196514691594,
            "gamma_corr_down": 0.3116016263827458,
        },
    ),
    "pathmnist": (
        0.08839299601334816,
        {
            "pixelate": 0.20934201922262957,
            "jpeg_compression": 0.24709267033930377,
            "defocus_blur": 0.4621259742146214,
            "motion_blur": 0.3689076534699618,
            "brightness_up": 0.41551581022730166,
            "brightness_down": 0.2811688318161528,
            "contrast_up": 0.2338925659881773,
            "contrast_down": 0.13718687818913905,
            "saturate": 0.3341143518079194,
            "stain_deposit": 0.24930831751137275,
            "bubble": 0.10818301335634566,
        },
    ),
    "bloodmnist": (
        0.018369282094266692,
        {
            "pixelate": 0.05975618949678589,
            "jpeg_compression": 0.13976187053705183,
            "defocus_blur": 0.22399795597780647,
            "motion_blur": 0.1845192137218041,
            "brightness_up": 0.06946294328845175,
            "brightness_down": 0.0790077546902872,
            "contrast_up": 0.05215362284240639,
            "contrast_down": 0.07966068499560328,
            "saturate": 0.03478558170020538,
            "stain_deposit": 0.18536119379858546,
            "bubble": 0.12898833684644578,
        },
    ),
    "dermamnist": (
        0.3985775597242611,
        {
            "pixelate": 0.5105118313063095,
            "jpeg_compression": 0.47716296678659287,
            "gaussian_noise": 0.770161396521756,
            "speckle_noise": 0.7688784860204994,
            "impulse_noise": 0.7995552265467947,
            "shot_noise": 0.8391552104792783,
            "defocus_blur": 0.7008318467374395,
            "motion_blur": 0.6266414682428412,
            "zoom_blur": 0.5277668583085878,
            "brightness_up": 0.4473990148869178,
            "brightness_down": 0.5772968080812169,
            "contrast_up": 0.430415384126964,
            "contrast_down": 0.5398210493891896,
            "black_corner": 0.7591457853547467,
            "characters": 0.4461917314736283,
        },
    ),
}


def summary(clean_error: float, errors: dict[str, list[float]], dataset: str) -> dict:
    """MedMNIST-C's summary (its Evaluator.populate_summary): per corruption the mean balanced
    error over the severities, BE = that mean / AlexNet's, and rBE = (that mean - the clean
    error) / (AlexNet's mean - AlexNet's clean error); BE and rBE averaged over corruptions."""
    alex_clean, alex = ALEXNET[dataset.lower()]
    mean = {c: float(np.mean(e)) for c, e in errors.items()}
    be = {c: mean[c] / alex[c] for c in mean}
    rbe = {c: (mean[c] - clean_error) / (alex[c] - alex_clean) for c in mean}
    return {
        "clean_error": clean_error,
        "mean_error": mean,
        "be_per_corruption": be,
        "rbe_per_corruption": rbe,
        "be": float(np.mean(list(be.values()))),
        "rbe": float(np.mean(list(rbe.values()))),
    }
