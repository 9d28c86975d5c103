"""Functional alignment between subjects that saw the same stimuli.

Pairwise (source subject -> target subject, rows = the same stimuli in both):

- :class:`ProcrustesAlignment`: a (semi-)orthogonal map, optionally scaled; voxel counts may
  differ (Haxby et al. 2011; Schönemann 1966).
- :class:`RidgeAlignment`: a ridge regression from source to target voxels, the
  regularisation of each target voxel chosen by cross-validation (our :class:`RidgeCV`).

Group (a list of subjects, rows = the same stimuli in all):

- :class:`Hyperalignment`: iterative Procrustes to a common template (Haxby et al. 2011),
  in a ``n_components``-dimensional common space so that voxel counts may differ.
- :class:`SharedResponseModel`: the deterministic shared response model (Chen et al. 2015),
  ``X_i ≈ S W_iᵀ`` with orthonormal ``W_i``.

And :class:`FunctionalAlignmentAdapter` / :func:`align_then_decode`: decode a new subject
with a reference subject's decoder, after aligning the new subject into the reference.

Arrays are ``(n_samples, n_voxels)``. Every estimator saves to one ``.safetensors`` file
(arrays + its parameters as JSON metadata) with ``save`` and comes back with ``load``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..models.ridge import DEFAULT_ALPHAS, RidgeCV
from ..utils.io import atomic_path
from ..utils.logging import logger
from ..utils.validation import BadInputError, BadTypeError, check_array, check_option
from ._solvers import procrustes, random_orthonormal, srm_objective

__all__ = [
    "ProcrustesAlignment",
    "RidgeAlignment",
    "Hyperalignment",
    "SharedResponseModel",
    "FunctionalAlignmentAdapter",
    "align_then_decode",
    "load_alignment",
]

ADAPTER_METHODS = ("procrustes", "ridge", "srm")


# ---------------------------------------------------------------------- validation
def _check_data(name: str, X: Any, *, min_samples: int = 1) -> np.ndarray:
    arr = check_array(name, X, ndim=2)
    if arr.dtype.kind not in "fiub":
        raise BadTypeError(f"{name} must hold numbers, got dtype {arr.dtype} instead.")
    if arr.shape[0] < min_samples or arr.shape[1] < 1:
        raise BadInputError(
            f"{name} needs at least {min_samples} sample(s) and 1 voxel, got shape {arr.shape}."
        )
    return arr.astype(np.float64, copy=False)


def _check_pair(X_source: Any, X_target: Any) -> tuple[np.ndarray, np.ndarray]:
    src = _check_data("X_source", X_source, min_samples=2)
    tgt = _check_data("X_target", X_target, min_samples=2)
    if src.shape[0] != tgt.shape[0]:
        raise BadInputError(
            f"X_source has {src.shape[0]} samples but X_target has {tgt.shape[0]}; rows must "
            "be the responses to the same stimuli, in the same order."
        )
    return src, tgt


def _check_group(Xs: Any, name: str = "Xs") -> list[np.ndarray]:
    if isinstance(Xs, np.ndarray) or not isinstance(Xs, list | tuple):
        raise BadTypeError(
            f"{name} must be a list of 2-D arrays (one per subject), got "
            f"{type(Xs).__name__} instead."
        )
    if len(Xs) < 2:
        raise BadInputError(f"{name} needs at least 2 subjects, got {len(Xs)}.")
    arrays = [_check_data(f"{name}[{i}]", X, min_samples=2) for i, X in enumerate(Xs)]
    n = {a.shape[0] for a in arrays}
    if len(n) != 1:
        raise BadInputError(
            f"{name}: every subject needs the same number of samples (the same stimuli in the "
            f"same order), got {[a.shape[0] for a in arrays]}."
        )
    return arrays


def _check_n_features(name: str, X: np.ndarray, expected: int) -> None:
    if X.shape[1] != expected:
        raise BadInputError(
            f"{name} has {X.shape[1]} voxels but the alignment was fitted on {expected}."
        )


def _check_subject(subject: Any, n_subjects: int) -> int:
    if isinstance(subject, bool) or not isinstance(subject, int | np.integer):
        raise BadTypeError(f"subject must be an int index, got {type(subject).__name__}.")
    if not 0 <= int(subject) < n_subjects:
        raise BadInputError(
            f"subject must be an index in 0..{n_subjects - 1} (the order of fit), got {subject}."
        )
    return int(subject)


# ---------------------------------------------------------------------- save / load
class _SaveMixin:
    """``save`` / ``load`` as one safetensors file: arrays + JSON parameters."""

    _arrays: tuple[str, ...] = ()
    _lists: tuple[str, ...] = ()
    _scalars: tuple[str, ...] = ()

    def save(self, path) -> Path:
        """Write the fitted alignment to ``path`` (a ``.safetensors`` file, atomically).

        Parameters
        ----------
        path : str | PathLike

        Returns
        -------
        path : Path
        """
        from safetensors.numpy import save_file

        check_is_fitted(self)
        tensors = {k: np.ascontiguousarray(getattr(self, k)) for k in self._arrays}
        lengths = {}
        for k in self._lists:
            items = getattr(self, k)
            lengths[k] = len(items)
            tensors.update({f"{k}{i}": np.ascontiguousarray(a) for i, a in enumerate(items)})
        meta = {
            "class": type(self).__name__,
            "params": self.get_params(),
            "lists": lengths,
            "scalars": {k: getattr(self, k) for k in self._scalars},
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"config": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, path):
        """Rebuild an alignment written by :meth:`save`."""
        return load_alignment(path, expected=cls)


def load_alignment(path, expected: type | None = None):
    """Load any alignment saved with ``save`` (the class is read from the file).

    Parameters
    ----------
    path : str | PathLike
        A file written by ``save``.
    expected : type | None
        Raise unless the file holds this class.

    Returns
    -------
    alignment : ProcrustesAlignment | RidgeAlignment | Hyperalignment | SharedResponseModel
    """
    from safetensors import safe_open

    from ..utils.validation import check_path

    path = check_path("path", path, kind="file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("config", "null"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as err:  # not a safetensors file
        raise BadInputError(f"path: {str(path)!r} is not a saved alignment ({err}).") from None
    classes = {c.__name__: c for c in _ALIGNERS}
    if not isinstance(meta, dict) or meta.get("class") not in classes:
        raise BadInputError(f"path: {str(path)!r} holds no alignment config.")
    cls = classes[meta["class"]]
    if expected is not None and cls is not expected:
        raise BadInputError(
            f"path: {str(path)!r} holds a {cls.__name__}, not a {expected.__name__}; "
            f"use {cls.__name__}.load or load_alignment."
        )
    obj = cls(**meta["params"])
    for k in cls._arrays:
        setattr(obj, k, tensors[k])
    for k, n in meta["lists"].items():
        setattr(obj, k, [tensors[f"{k}{i}"] for i in range(n)])
    for k, v in meta["scalars"].items():
        setattr(obj, k, v)
    return obj


# ---------------------------------------------------------------------- pairwise
class ProcrustesAlignment(_SaveMixin, TransformerMixin, BaseEstimator):
    """Orthogonal Procrustes from source to target voxels (semi-orthogonal if counts differ).

    Finds ``R`` minimising ``||c (X_source - m_s) R - (X_target - m_t)||_F`` with ``R``
    orthogonal (square) or semi-orthogonal (``R Rᵀ = I`` or ``Rᵀ R = I``), through the SVD of
    the cross-covariance (see :func:`~braindecode_suite.alignment._solvers.procrustes`: with
    more source than target voxels this is the correlation-maximising map).

    Parameters
    ----------
    scaling : bool
        Also fit a scalar ``c`` (else 1).
    center : bool
        Remove each voxel's mean before fitting; ``transform`` adds the target means back.

    Attributes
    ----------
    rotation_ : ndarray of shape (n_source_voxels, n_target_voxels)
    scale_ : float
    source_mean_, target_mean_ : ndarray of shape (n_source_voxels,), (n_target_voxels,)
    """

    _arrays = ("rotation_", "source_mean_", "target_mean_")
    _scalars = ("scale_",)

    def __init__(self, scaling: bool = False, center: bool = True):
        self.scaling = scaling
        self.center = center

    def fit(self, X_source, X_target) -> ProcrustesAlignment:
        """Fit the map from ``X_source`` (n_samples, p) to ``X_target`` (n_samples, q)."""
        src, tgt = _check_pair(X_source, X_target)
        self.source_mean_ = src.mean(0) if self.center else np.zeros(src.shape[1])
        self.target_mean_ = tgt.mean(0) if self.center else np.zeros(tgt.shape[1])
        self.rotation_, self.scale_ = procrustes(
            src - self.source_mean_, tgt - self.target_mean_, scaling=bool(self.scaling)
        )
        return self

    def transform(self, X) -> np.ndarray:
        """Map source responses (n, p) into the target's voxels (n, q)."""
        check_is_fitted(self, "rotation_")
        X = _check_data("X", X)
        _check_n_features("X", X, self.rotation_.shape[0])
        return (X - self.source_mean_) @ self.rotation_ * self.scale_ + self.target_mean_


class RidgeAlignment(_SaveMixin, TransformerMixin, BaseEstimator):
    """Ridge regression from source voxels to target voxels (our :class:`RidgeCV`).

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularisations, chosen by ``cv`` per target voxel (or jointly).
    cv : 'loo' | 'gcv' | int
        As in :class:`~braindecode_suite.models.RidgeCV`.
    alpha_per_target : bool
        One alpha per target voxel.
    dtype : 'float32' | 'float64'
        Precision of the solve.

    Attributes
    ----------
    coef_ : ndarray of shape (n_target_voxels, n_source_voxels)
    intercept_ : ndarray of shape (n_target_voxels,)
    best_alphas_ : ndarray of shape (n_target_voxels,)
    """

    _arrays = ("coef_", "intercept_", "best_alphas_")

    def __init__(self, alphas=DEFAULT_ALPHAS, cv="loo", alpha_per_target=True, dtype="float32"):
        self.alphas = alphas
        self.cv = cv
        self.alpha_per_target = alpha_per_target
        self.dtype = dtype

    def get_params(self, deep=True):  # tuple -> list so that the params are JSON
        params = super().get_params(deep)
        params["alphas"] = [float(a) for a in np.atleast_1d(params["alphas"])]
        return params

    def fit(self, X_source, X_target) -> RidgeAlignment:
        """Fit the map from ``X_source`` (n_samples, p) to ``X_target`` (n_samples, q)."""
        src, tgt = _check_pair(X_source, X_target)
        check_option("dtype", self.dtype, ("float32", "float64"))
        ridge = RidgeCV(
            self.alphas, cv=self.cv, alpha_per_target=self.alpha_per_target, dtype=self.dtype
        ).fit(src, tgt)
        self.coef_ = np.asarray(ridge.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(ridge.intercept_, dtype=np.float64)
        self.best_alphas_ = np.asarray(ridge.best_alphas_, dtype=np.float64)
        return self

    def transform(self, X) -> np.ndarray:
        """Predict target voxels (n, q) from source responses (n, p)."""
        check_is_fitted(self, "coef_")
        X = _check_data("X", X)
        _check_n_features("X", X, self.coef_.shape[1])
        return X @ self.coef_.T + self.intercept_


# ---------------------------------------------------------------------- group
def _check_components(n_components, arrays: list[np.ndarray], default: int) -> int:
    k = default if n_components is None else n_components
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise BadInputError(f"n_components must be None or an int >= 1, got {n_components!r}.")
    smallest = min(a.shape[1] for a in arrays)
    if k > smallest:
        raise BadInputError(
            f"n_components={k} exceeds the smallest voxel count ({smallest}); use at most "
            f"{smallest} (the common space must fit in every subject)."
        )
    return int(k)


class _GroupAligner(_SaveMixin, TransformerMixin, BaseEstimator):
    """Common code: per-subject maps ``w_`` into a shared space and per-subject means."""

    _lists = ("w_", "means_")

    def _center(self, X: np.ndarray, mean: np.ndarray) -> np.ndarray:
        return X - mean if self.center else X

    def _fit_subject_map(self, X: np.ndarray, shared: np.ndarray) -> np.ndarray:
        w, scale = procrustes(X, shared, scaling=getattr(self, "scaling", False))
        return w * scale

    def transform(self, Xs) -> list[np.ndarray]:
        """Map each subject's responses (in the order of fit) into the shared space.

        Parameters
        ----------
        Xs : list of ndarray of shape (n_samples_i, n_voxels_i)
            One array per fitted subject (the samples may differ from the fit's).

        Returns
        -------
        list of ndarray of shape (n_samples_i, n_components)
        """
        check_is_fitted(self, "w_")
        if not isinstance(Xs, list | tuple) or len(Xs) != len(self.w_):
            raise BadInputError(
                f"Xs must be a list of {len(self.w_)} arrays (one per fitted subject), got "
                f"{type(Xs).__name__} of length {len(Xs) if hasattr(Xs, '__len__') else '?'}."
            )
        return [self.transform_subject(X, i) for i, X in enumerate(Xs)]

    def transform_subject(self, X, subject: int) -> np.ndarray:
        """Map one subject's responses (n, n_voxels) into the shared space (n, k).

        ``subject`` is its index in the list given to ``fit`` (new subjects follow).
        """
        check_is_fitted(self, "w_")
        subject = _check_subject(subject, len(self.w_))
        X = _check_data("X", X)
        _check_n_features("X", X, self.w_[subject].shape[0])
        return self._center(X, self.means_[subject]) @ self.w_[subject]

    def inverse_transform_subject(self, S, subject: int) -> np.ndarray:
        """Map shared-space responses (n, k) into one subject's voxels (n, n_voxels)."""
        check_is_fitted(self, "w_")
        subject = _check_subject(subject, len(self.w_))
        S = _check_data("S", S)
        w = self.w_[subject]
        _check_n_features("S", S, w.shape[1])
        back = S @ np.linalg.pinv(w) if getattr(self, "scaling", False) else S @ w.T
        return back + (self.means_[subject] if self.center else 0.0)

    def transform_new_subject(self, X_shared_new) -> np.ndarray:
        """Fit only a new subject's map from its responses to the fit's stimuli.

        The new subject is appended (its index is ``len(w_) - 1`` afterwards); the other
        subjects and the shared space stay unchanged.

        Parameters
        ----------
        X_shared_new : ndarray of shape (n_samples, n_voxels_new)
            The new subject's responses to the stimuli of ``fit``, in the same order.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            These responses in the shared space.
        """
        check_is_fitted(self, "w_")
        X = _check_data("X_shared_new", X_shared_new, min_samples=2)
        shared = self._shared_target()
        if X.shape[0] != shared.shape[0]:
            raise BadInputError(
                f"X_shared_new has {X.shape[0]} samples but the model was fitted on "
                f"{shared.shape[0]}; give the new subject's responses to the same stimuli."
            )
        if X.shape[1] < shared.shape[1]:
            raise BadInputError(
                f"X_shared_new has {X.shape[1]} voxels, fewer than n_components={shared.shape[1]}."
            )
        mean = X.mean(0) if self.center else np.zeros(X.shape[1])
        w = self._fit_subject_map(self._center(X, mean), shared)
        self.w_ = [*self.w_, w]
        self.means_ = [*self.means_, mean]
        return self._center(X, mean) @ w


class Hyperalignment(_GroupAligner):
    """Iterative Procrustes to a common template (Haxby et al. 2011).

    Level 1: the template starts as the first subject (its top ``n_components`` principal
    components when voxel counts differ); each next subject is aligned to it and averaged
    in. Level 2 (``n_iter`` times): every subject is aligned to the template and the
    template becomes their mean. Finally each subject's map to the last template is kept.

    Parameters
    ----------
    n_components : int | None
        Dimension of the common space; None = the smallest voxel count.
    n_iter : int
        Level-2 iterations.
    scaling : bool
        Scaled Procrustes maps.
    center : bool
        Remove each subject's voxel means first.

    Attributes
    ----------
    w_ : list of ndarray of shape (n_voxels_i, n_components)
        Semi-orthogonal map of each subject (times its scale).
    means_ : list of ndarray of shape (n_voxels_i,)
    template_ : ndarray of shape (n_samples, n_components)
    """

    _arrays = ("template_",)

    def __init__(self, n_components=None, n_iter: int = 3, scaling=False, center=True):
        self.n_components = n_components
        self.n_iter = n_iter
        self.scaling = scaling
        self.center = center

    def _shared_target(self) -> np.ndarray:
        return self.template_

    def fit(self, Xs, y=None) -> Hyperalignment:
        """Fit on a list of responses to the same stimuli, one (n_samples, n_voxels_i) each."""
        arrays = _check_group(Xs)
        k = _check_components(self.n_components, arrays, min(a.shape[1] for a in arrays))
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) or self.n_iter < 0:
            raise BadInputError(f"n_iter must be an int >= 0, got {self.n_iter!r}.")
        means = [a.mean(0) if self.center else np.zeros(a.shape[1]) for a in arrays]
        data = [self._center(a, m) for a, m in zip(arrays, means, strict=True)]
        first = data[0]
        if first.shape[1] == k:
            template = first.copy()
        else:  # first subject's top-k principal axes
            template = first @ np.linalg.svd(first, full_matrices=False)[2][:k].T
        for i, X in enumerate(data[1:], start=1):  # level 1
            template = (i * template + X @ self._fit_subject_map(X, template)) / (i + 1)
        for _ in range(self.n_iter):  # level 2
            template = np.mean([X @ self._fit_subject_map(X, template) for X in data], axis=0)
        self.w_ = [self._fit_subject_map(X, template) for X in data]
        self.means_ = means
        self.template_ = template
        return self


class SharedResponseModel(_GroupAligner):
    """Deterministic shared response model (Chen et al. 2015; brainiak's ``DetSRM``).

    ``X_i ≈ S W_iᵀ`` (centred), ``W_i`` of shape ``(n_voxels_i, k)`` with orthonormal
    columns, ``S`` of shape ``(n_samples, k)``; alternating updates
    ``W_i = procrustes(X_i, S)`` (SVD of ``X_iᵀ S``) and ``S = mean_i X_i W_i``, from random
    orthonormal ``W_i``.

    Parameters
    ----------
    n_components : int
        Dimension ``k`` of the shared space.
    n_iter : int
        Alternating updates.
    center : bool
        Remove each subject's voxel means first (brainiak does not; it expects centred data).
    random_state : int
        Seed of the initial ``W_i``.

    Attributes
    ----------
    w_ : list of ndarray of shape (n_voxels_i, n_components)
    s_ : ndarray of shape (n_samples, n_components)
    means_ : list of ndarray of shape (n_voxels_i,)
    objective_ : ndarray of shape (n_iter + 1,)
        The loss ``Σ_i ||X_i - S W_iᵀ||² / (2 n_samples)`` after initialisation and each update.
    """

    _arrays = ("s_", "objective_")

    def __init__(self, n_components: int = 50, n_iter: int = 10, center=True, random_state=0):
        self.n_components = n_components
        self.n_iter = n_iter
        self.center = center
        self.random_state = random_state

    def _shared_target(self) -> np.ndarray:
        return self.s_

    def fit(self, Xs, y=None) -> SharedResponseModel:
        """Fit on a list of responses to the same stimuli, one (n_samples, n_voxels_i) each."""
        arrays = _check_group(Xs)
        k = _check_components(self.n_components, arrays, 50)
        if k > arrays[0].shape[0]:
            raise BadInputError(
                f"n_components={k} exceeds n_samples={arrays[0].shape[0]}; use at most "
                f"{arrays[0].shape[0]} components or more shared stimuli."
            )
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) or self.n_iter < 1:
            raise BadInputError(f"n_iter must be an int >= 1, got {self.n_iter!r}.")
        means = [a.mean(0) if self.center else np.zeros(a.shape[1]) for a in arrays]
        data = [self._center(a, m) for a, m in zip(arrays, means, strict=True)]
        rng = np.random.default_rng(self.random_state)
        ws = [random_orthonormal(X.shape[1], k, rng) for X in data]
        shared = np.mean([X @ w for X, w in zip(data, ws, strict=True)], axis=0)
        objective = [srm_objective(data, ws, shared)]
        for _ in range(self.n_iter):
            ws = [procrustes(X, shared)[0] for X in data]
            shared = np.mean([X @ w for X, w in zip(data, ws, strict=True)], axis=0)
            objective.append(srm_objective(data, ws, shared))
        logger.debug("SRM objective %.4g -> %.4g", objective[0], objective[-1])
        self.w_, self.s_, self.means_ = ws, shared, means
        self.objective_ = np.asarray(objective)
        return self


_ALIGNERS = (ProcrustesAlignment, RidgeAlignment, Hyperalignment, SharedResponseModel)


# ---------------------------------------------------------------------- align then decode
class FunctionalAlignmentAdapter(BaseEstimator):
    """Align a new subject into a reference subject, then decode with the reference's decoder.

    ``fit`` learns the map from the new subject's responses to shared stimuli to the
    reference's responses to the same stimuli; ``predict`` maps new responses into the
    reference's voxels and applies ``reference_decoder.predict``.

    Parameters
    ----------
    reference_decoder : fitted estimator with ``predict``
        Trained on the reference subject's voxels (e.g. our ``RidgeCV``).
    method : 'procrustes' | 'ridge' | 'srm'
        'procrustes': :class:`ProcrustesAlignment`; 'ridge': :class:`RidgeAlignment`;
        'srm': a two-subject :class:`SharedResponseModel`, mapping new -> shared -> reference
        (``X W_new W_refᵀ``).
    alignment_params : dict | None
        Keyword arguments of the alignment class (for 'srm', ``n_components`` defaults to
        ``min(50, n_samples, n_voxels)``).

    Attributes
    ----------
    alignment_ : ProcrustesAlignment | RidgeAlignment | SharedResponseModel
    """

    def __init__(self, reference_decoder, method: str = "procrustes", alignment_params=None):
        self.reference_decoder = reference_decoder
        self.method = method
        self.alignment_params = alignment_params

    def fit(self, X_new, X_reference) -> FunctionalAlignmentAdapter:
        """Fit the alignment on responses to the same stimuli (rows paired).

        Parameters
        ----------
        X_new : ndarray of shape (n_samples, n_voxels_new)
        X_reference : ndarray of shape (n_samples, n_voxels_reference)
        """
        check_option("method", self.method, ADAPTER_METHODS)
        if not callable(getattr(self.reference_decoder, "predict", None)):
            raise BadTypeError(
                "reference_decoder must be a fitted estimator with a predict method, got "
                f"{type(self.reference_decoder).__name__}."
            )
        params = dict(self.alignment_params or {})
        src, ref = _check_pair(X_new, X_reference)
        n_in = getattr(self.reference_decoder, "n_features_in_", None)
        if n_in is not None and n_in != ref.shape[1]:
            raise BadInputError(
                f"X_reference has {ref.shape[1]} voxels but reference_decoder expects "
                f"{n_in}; give the reference subject's responses in the decoder's voxels."
            )
        if self.method == "procrustes":
            self.alignment_ = ProcrustesAlignment(**params).fit(src, ref)
        elif self.method == "ridge":
            self.alignment_ = RidgeAlignment(**params).fit(src, ref)
        else:
            params.setdefault("n_components", min(50, len(src), src.shape[1], ref.shape[1]))
            self.alignment_ = SharedResponseModel(**params).fit([ref, src])
        return self

    def transform(self, X_new) -> np.ndarray:
        """The new subject's responses (n, n_voxels_new) in the reference's voxels."""
        check_is_fitted(self, "alignment_")
        if isinstance(self.alignment_, SharedResponseModel):
            return self.alignment_.inverse_transform_subject(
                self.alignment_.transform_subject(X_new, 1), 0
            )
        return self.alignment_.transform(X_new)

    def predict(self, X_new) -> np.ndarray:
        """Decode the new subject's responses with the reference decoder."""
        return self.reference_decoder.predict(self.transform(X_new))


def align_then_decode(
    reference_decoder,
    X_new_shared,
    X_reference_shared,
    X_new,
    *,
    method: str = "procrustes",
    alignment_params: dict | None = None,
) -> np.ndarray:
    """Fit a :class:`FunctionalAlignmentAdapter` on shared stimuli and decode ``X_new``.

    Parameters
    ----------
    reference_decoder : fitted estimator with ``predict``
    X_new_shared : ndarray of shape (n_shared, n_voxels_new)
    X_reference_shared : ndarray of shape (n_shared, n_voxels_reference)
        Rows = the same stimuli as ``X_new_shared``.
    X_new : ndarray of shape (n_samples, n_voxels_new)
        New-subject responses to decode.
    method, alignment_params
        As in :class:`FunctionalAlignmentAdapter`.

    Returns
    -------
    predictions : ndarray of shape (n_samples, n_targets)
    """
    adapter = FunctionalAlignmentAdapter(reference_decoder, method, alignment_params)
    return adapter.fit(X_new_shared, X_reference_shared).predict(X_new)
