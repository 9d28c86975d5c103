"""Plain solver functions under the alignment estimators (NumPy/SciPy only)."""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["procrustes", "random_orthonormal", "srm_objective"]


def procrustes(
    source: np.ndarray, target: np.ndarray, *, scaling: bool = False
) -> tuple[np.ndarray, float]:
    """Semi-orthogonal ``R`` (and scale ``c``) minimising ``||c · source @ R - target||_F``.

    The SVD form ``source.T @ target = U S Vᵀ``, ``R = U Vᵀ`` (Schönemann 1966); for square
    input it is :func:`scipy.linalg.orthogonal_procrustes`. For rectangular problems it
    gives the semi-orthogonal ``R`` maximising ``tr(Rᵀ sourceᵀ target)``: with ``p < q``,
    ``R`` has orthonormal rows (``R Rᵀ = I``), ``||source @ R||`` is fixed and this is the
    least-squares map; with ``p > q`` (orthonormal columns, ``Rᵀ R = I``) it is the usual
    correlation form (as in fmralign and brainiak's SRM), not the exact least-squares map,
    which has no closed form. ``c = trace(S) / ||source||²_F``.

    Parameters
    ----------
    source : ndarray of shape (n_samples, p)
    target : ndarray of shape (n_samples, q)
    scaling : bool
        Also fit the scalar ``c`` (else ``c = 1``).

    Returns
    -------
    R : ndarray of shape (p, q)
    scale : float
    """
    cross = source.T @ target
    u, s, vt = scipy.linalg.svd(cross, full_matrices=False)
    rotation = u @ vt
    scale = 1.0
    if scaling:
        norm = float(np.sum(source * source))
        scale = float(s.sum() / norm) if norm > 0 else 1.0
    return rotation, scale


def random_orthonormal(n_rows: int, n_cols: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(n_rows, n_cols)`` matrix with orthonormal columns (QR of a Gaussian)."""
    q, r = np.linalg.qr(rng.standard_normal((n_rows, n_cols)))
    return q * np.sign(np.diag(r))[None, :]


def srm_objective(Xs: list[np.ndarray], ws: list[np.ndarray], shared: np.ndarray) -> float:
    """``Σ_i ||X_i - S W_iᵀ||²_F / (2 n_samples)``, the deterministic SRM loss."""
    total = sum(float(np.sum((X - shared @ w.T) ** 2)) for X, w in zip(Xs, ws, strict=True))
    return total / (2 * shared.shape[0])
