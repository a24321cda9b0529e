"""Numeric precision of the PyTorch convolutional models: float32, or bfloat16 autocast
where the hardware has it (detected, never assumed).

bf16 autocast runs convolutions and linear layers in bfloat16 and keeps the weights, the
optimizer and the loss in float32. On a CPU it pays only with native bf16 instructions
(AVX512-BF16 or AMX); without them oneDNN emulates it, slower than float32, so medclf refuses
it there instead of falling back silently. ``auto`` (the ``fast`` preset's) asks for bf16 where
the device has it natively and float32 elsewhere; what it became is in the run's env.json.
"""

from __future__ import annotations

import contextlib

from medclf.models.config import PRECISIONS


def cpu_bf16() -> str | None:
    """The CPU's native bf16 instructions as torch sees them ('amx+avx512_bf16',
    'avx512_bf16'), or None."""
    import torch

    found = []
    if torch.cpu._is_amx_tile_supported():
        found.append("amx")
    if torch.cpu._is_avx512_bf16_supported():
        found.append("avx512_bf16")
    return "+".join(found) or None


def bf16_support(device) -> str | None:
    """What runs bf16 natively on ``device`` ('cpu', 'cuda', 'cuda:N' or a torch.device), or
    None. A GPU needs compute capability 8 (Ampere) or later: torch's is_bf16_supported() also
    says yes to older GPUs, which emulate it."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return cpu_bf16()
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"cuda sm_{major}{minor}" if major >= 8 else None


def check_precision(precision: str, device) -> None:
    """Refuse a precision this device cannot run natively: one line, never a fallback."""
    from medclf.errors import ConfigError

    if precision not in PRECISIONS:
        raise ConfigError(f"precision == {precision!r}, must be one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and bf16_support(device) is None:
        where = (
            "this CPU has neither AVX512-BF16 nor AMX"
            if str(device).startswith("cpu")
            else "this CUDA device has no native bfloat16 (compute capability below 8)"
        )
        raise ConfigError(f"--precision bf16 asked for, but {where}; use --precision fp32")


def resolve(precision: str, device) -> str:
    """The precision a run trains in: ``auto`` becomes bf16 where ``device`` runs it
    natively, else fp32; fp32 and bf16 are checked (check_precision) and kept."""
    check_precision(precision, device)
    if precision == "auto":
        return "bf16" if bf16_support(device) else "fp32"
    return precision


def autocast(precision: str, device_type: str):
    """The forward pass's context: bf16 autocast, or nothing for fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
