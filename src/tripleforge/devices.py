"""Which torch device a `device` param names on this machine."""

from __future__ import annotations

from tripleforge.errors import UserError


def resolve_device(device: str, key: str) -> str:
    """`auto` -> cuda when available, else cpu; a cuda device this machine lacks is a UserError naming
    `key` (the params key), raised before any work rather than as a torch assertion mid-run."""
    if device == "cpu":
        return device
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        raise UserError(f"{key}: '{device}' asked for, but torch.cuda.is_available() is false on this machine "
                        f"(use cpu or auto)")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise UserError(f"{key}: '{device}' asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
