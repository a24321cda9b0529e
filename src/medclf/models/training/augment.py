"""Batched data augmentation on tensors already on their device: no per-image Python loop.

Every op takes a (b, C, H, W) float batch (the flips also a (b, C, D, H, W) batch of volumes)
and a ``torch.Generator``, draws all its random
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


def _flip(x: Tensor, axis: int, generator: torch.Generator, p: float) -> Tensor:
    flip = _rand(len(x), generator, x.device) < p
    return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(axis), x)


def hflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image (or volume) left-right with probability p."""
    return _flip(x, -1, generator, p)


def vflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each image (or volume) top-bottom with probability p."""
    return _flip(x, -2, generator, p)


def dflip(x: Tensor, generator: torch.Generator, p: float = 0.5) -> Tensor:
    """Mirror each volume along its depth (first spatial) axis with probability p."""
    if x.dim() != 5:
        raise ConfigError(f"dflip flips the depth of volumes, but the batch is {x.dim()}-D")
    return _flip(x, -3, generator, p)


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


OPS = {
    "hflip": hflip,
    "vflip": vflip,
    "dflip": dflip,
    "crop": random_crop,
    "affine": random_affine,
}


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
    # MedMNIST3D volumes (D, H, W): flips along the three axes only (crop and affine are 2D ops)
    "organmnist3d": (),
    "nodulemnist3d": ("hflip", "vflip", "dflip"),
    "adrenalmnist3d": ("hflip", "vflip", "dflip"),
    "fracturemnist3d": ("hflip", "vflip", "dflip"),
    "vesselmnist3d": ("hflip", "vflip", "dflip"),
    "synapsemnist3d": ("hflip", "vflip", "dflip"),
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
    "organmnist3d": "the labels name left and right organs and MedMNIST does not say which axis "
    "is left-right: a mirror on it swaps them; no flips",
    "nodulemnist3d": "a lung nodule's malignancy does not depend on its orientation",
    "adrenalmnist3d": "the adrenal mass's shape (normal / hyperplasia) survives any mirror; both "
    "glands occur, so left-right is not a label",
    "fracturemnist3d": "a rib fracture's type does not depend on which side or direction it faces",
    "vesselmnist3d": "an aneurysm is one whatever the vessel's orientation",
    "synapsemnist3d": "a synapse's type (excitatory / inhibitory) has no orientation",
}
