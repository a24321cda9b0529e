"""Batched data augmentation on tensors already on their device: no per-image Python loop.

Every op takes a (b, C, H, W) float batch and a ``torch.Generator``, draws all its random
numbers from that generator (on the generator's device, then moved), and returns a new batch
of the same shape, so a seeded generator gives the same batch on every run.
``SAFE_AUGMENT`` says which ops keep each MedMNIST dataset's labels valid, and why.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from medclf.errors import ConfigError


def _rand(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability p."""
    flip = _rand(len(x), generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def vflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image top-bottom with probability p."""
    flip = _rand(len(x), generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-2), x)


def random_crop(
    x: Tensor, generator: torch.Generator, pad: int | None = None, mode: str = "reflect"
) -> Tensor:
    """Pad each side by ``pad`` pixels, then cut an H x W window at a random offset per image.

    ``pad`` defaults to an eighth of the side (3 at 28, as CIFAR's 4 at 32). ``mode`` "reflect"
    mirrors the border; "zero" pads with 0, which is mid-grey after MedMNIST's mean 0.5 / sd 0.5
    normalisation, hence reflect by default.
    """
    if mode not in ("reflect", "zero"):
        raise ConfigError(f"crop mode == {mode!r}, must be 'reflect' or 'zero'")
    b, c, h, w = x.shape
    pad = max(1, min(h, w) // 8) if pad is None else pad
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if mode == "reflect" else "constant")
    # Offsets in [0, 2 * pad]; with pad 0 every offset is 0 and the crop is the identity.
    dy = (_rand(b, generator, x.device) * (2 * pad + 1)).long().clamp_max(2 * pad)
    dx = (_rand(b, generator, x.device) * (2 * pad + 1)).long().clamp_max(2 * pad)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (b, h)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (b, w)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_affine(
    x: Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
) -> Tensor:
    """Rotate each image by up to +-degrees and zoom it by a factor in ``scale``, about its
    centre, with bilinear interpolation and mirrored borders."""
    b = len(x)
    angle = (_rand(b, generator, x.device) * 2 - 1) * math.radians(degrees)
    zoom = scale[0] + _rand(b, generator, x.device) * (scale[1] - scale[0])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


OPS = {"hflip": hflip, "vflip": vflip, "crop": random_crop, "affine": random_affine}


def augment(x: Tensor, ops: tuple[str, ...], generator: torch.Generator) -> Tensor:
    """Apply ``ops`` in order, each with its default strength, to the batch ``x``."""
    for op in ops:
        if op not in OPS:
            raise ConfigError(f"unknown augmentation {op!r}; choose from {tuple(OPS)}")
        x = OPS[op](x, generator)
    return x


# Which ops keep the labels of each MedMNIST dataset valid. "crop" (a shift of up to 1/8 of
# the side) and "affine" (+-10 degrees, 0.9-1.1 zoom) move no structure across the midline, so
# they are safe everywhere; flips are the question.
SAFE_AUGMENT: dict[str, tuple[str, ...]] = {
    "pathmnist": ("hflip", "vflip", "crop", "affine"),
    "chestmnist": ("hflip", "crop", "affine"),
    "dermamnist": ("hflip", "vflip", "crop", "affine"),
    "octmnist": ("hflip", "crop", "affine"),
    "pneumoniamnist": ("hflip", "crop", "affine"),
    "retinamnist": ("hflip", "vflip", "crop", "affine"),
    "breastmnist": ("hflip", "crop", "affine"),
    "bloodmnist": ("hflip", "vflip", "crop", "affine"),
    "tissuemnist": ("hflip", "vflip", "crop", "affine"),
    "organamnist": ("crop", "affine"),
    "organcmnist": ("crop", "affine"),
    "organsmnist": ("crop", "affine"),
}

AUGMENT_REASONS: dict[str, str] = {
    "pathmnist": "H&E tissue patches have no up or left: the tissue type survives any flip",
    "chestmnist": "no label is sided, so a mirrored X-ray keeps them; upside-down never occurs",
    "dermamnist": "dermoscopy of a lesion has no orientation",
    "octmnist": "a mirrored B-scan looks like the other eye's; flipping depth would invert the "
    "retinal layers",
    "pneumoniamnist": "pneumonia is not a sided label; upside-down X-rays never occur",
    "retinamnist": "the DR grade counts lesions anywhere in the fundus, whatever its orientation",
    "breastmnist": "benign/malignant is not sided; depth matters (skin on top, shadowing below)",
    "bloodmnist": "a cell under the microscope has no orientation",
    "tissuemnist": "kidney cortex cells under the microscope have no orientation",
    "organamnist": "labels name left/right femur, kidney and lung: a mirror swaps them; a "
    "vertical flip gives anatomy never seen at test time",
    "organcmnist": "coronal views: a mirror swaps the left/right labels as in organamnist",
    "organsmnist": "sagittal views: a mirror swaps front and back, anatomy never seen at "
    "test time; no flips",
}
