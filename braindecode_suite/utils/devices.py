"""Device and dtype resolution: one place that decides where tensors go."""

from __future__ import annotations

import re

from .validation import BadInputError, check_option

__all__ = ["resolve_device", "resolve_dtype"]

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def resolve_device(device: str = "auto"):
    """Return a :class:`torch.device` for ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.

    ``'auto'`` picks CUDA when available, else CPU. Asking for CUDA on a machine
    without it raises instead of silently running on the CPU.
    """
    import torch

    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise BadInputError(
            f"Invalid value for the 'device' parameter. Allowed values are 'auto', 'cpu', "
            f"'cuda' or 'cuda:N', but got {device!r} instead."
        )
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BadInputError(
                f"device={device!r} was asked for but no CUDA device is available; "
                "use device='auto' or 'cpu'."
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise BadInputError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    return torch.device(device)


def resolve_dtype(dtype: str = "float32"):
    """Return the torch dtype for ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``."""
    import torch

    table = {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float64": torch.float64,
    }
    check_option("dtype", dtype, table)
    return table[dtype]
