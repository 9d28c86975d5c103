"""Array backends for the ridge solvers: the same solver code on NumPy or torch (CPU/CUDA).

As in himalaya, a backend is a small object with the handful of calls that differ between
libraries; everything else in the solvers is operators (``@``, ``*``, slicing) that NumPy
arrays and torch tensors share.
"""

from __future__ import annotations

import numpy as np

from ..utils.validation import BadInputError, check_option

__all__ = ["get_backend", "NumpyBackend", "TorchBackend"]


class NumpyBackend:
    """NumPy arrays, LAPACK through SciPy (``eigh`` with the divide-and-conquer driver)."""

    name = "numpy"

    def __init__(self, dtype: str = "float32"):
        self.dtype = np.dtype(dtype)
        self.device = "cpu"
        self.eps = float(np.finfo(self.dtype).eps)

    def asarray(self, x):
        return np.ascontiguousarray(np.asarray(x), dtype=self.dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def eigh(self, a):
        """Eigenvalues (ascending) and eigenvectors of a symmetric matrix."""
        from scipy.linalg import eigh

        return eigh(a, driver="evd", overwrite_a=True, check_finite=False)

    def zeros(self, shape):
        return np.zeros(shape, dtype=self.dtype)

    def full(self, shape, value):
        return np.full(shape, value, dtype=self.dtype)

    def arange(self, n):
        return np.arange(n)

    def index(self, idx):
        return np.asarray(idx)

    def synchronize(self) -> None:
        pass


class TorchBackend:
    """torch tensors on ``device`` ('cpu', 'cuda', 'cuda:N')."""

    name = "torch"

    def __init__(self, dtype: str = "float32", device: str = "auto"):
        import torch

        from ..utils.devices import resolve_device

        self.torch = torch
        self.device = resolve_device(device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.eps = float(np.finfo(dtype).eps)

    def asarray(self, x):
        t = self.torch
        if isinstance(x, t.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        arr = np.asarray(x)
        return t.as_tensor(arr, dtype=self.dtype).to(self.device, non_blocking=True)

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def full(self, shape, value):
        return self.torch.full(shape, value, dtype=self.dtype, device=self.device)

    def arange(self, n):
        return self.torch.arange(n, device=self.device)

    def index(self, idx):
        return self.torch.as_tensor(np.asarray(idx), device=self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


def get_backend(backend: str = "numpy", dtype: str = "float32", device: str = "auto"):
    """Build a backend: ``'numpy'`` or ``'torch'`` (``device`` picks CPU or CUDA)."""
    check_option("backend", backend, ("numpy", "torch"))
    check_option("dtype", dtype, ("float32", "float64"))
    if backend == "numpy":
        if device not in ("auto", "cpu"):
            raise BadInputError(
                f"backend='numpy' runs on the CPU only, but device={device!r} was asked for; "
                "use backend='torch' for CUDA."
            )
        return NumpyBackend(dtype)
    return TorchBackend(dtype, device)
