"""Banded ridge regression (one regularisation per feature group) through himalaya.

Banded ridge (Nunez-Elizalde et al. 2019; Dupré la Tour et al. 2022) solves, per target,

    min_b ||Y - sum_i X_i b_i||^2 + sum_i alpha_i ||b_i||^2

with one ``alpha_i`` per feature group ``X_i``. himalaya solves it in kernel form: one linear
kernel ``K_i = X_i X_i^T`` per group, summed with weights ``exp(delta_i)``, and searches the
log kernel weights ``delta_i`` by cross-validation (``MultipleKernelRidgeCV``,
``solver="random_search"``). The two forms are the same model with
``alpha_i = exp(-delta_i)``. We build the pipeline of himalaya's own banded-ridge examples:
``ColumnKernelizer([(name_i, make_pipeline(StandardScaler(with_std=False),
Kernelizer("linear")), columns_i), ...]) -> MultipleKernelRidgeCV(kernels="precomputed")``.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..utils.logging import logger
from ..utils.validation import BadInputError, BadTypeError, check_array, check_option

__all__ = ["BandedRidgeCV", "DEFAULT_BANDED_ALPHAS"]

#: Global ridge strengths tried for every sampled group weighting (himalaya's ``alphas``).
#: The per-group strengths are ``alpha / gamma_i`` with ``gamma`` on the simplex, so the
#: grid only needs to cover the overall scale of the regularisation.
DEFAULT_BANDED_ALPHAS = tuple(float(a) for a in np.logspace(-2, 8, 21))

BACKENDS = ("numpy", "torch", "torch_cuda")


def _import_himalaya():
    try:
        import himalaya  # noqa: F401
        from himalaya.backend import get_backend, set_backend
        from himalaya.kernel_ridge import ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise BadInputError(
            "BandedRidgeCV needs the optional dependency himalaya; install it with "
            "`pip install himalaya`."
        ) from err
    return get_backend, set_backend, ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV


@contextlib.contextmanager
def _himalaya_backend(name):
    """Use himalaya backend ``name`` inside the block, then restore the previous one."""
    get_backend, set_backend, *_ = _import_himalaya()
    previous = get_backend().name
    backend = set_backend(name, on_error="warn")
    if backend.name != name:
        logger.warning("himalaya backend %r unavailable; using %r instead.", name, backend.name)
    try:
        yield backend
    finally:
        set_backend(previous, on_error="warn")


def _group_columns(groups, n_features):
    """Return (labels, column index arrays) from sizes (list/tuple) or labels (ndarray)."""
    if isinstance(groups, (list, tuple)):
        sizes = np.asarray(groups)
        if sizes.ndim != 1 or sizes.size == 0 or sizes.dtype.kind not in "iu":
            raise BadInputError(
                f"groups given as a list must be the sizes (ints) of consecutive feature "
                f"blocks, got {groups!r} instead."
            )
        if np.any(sizes < 1):
            raise BadInputError(f"groups sizes must all be >= 1, got {groups!r} instead.")
        if sizes.sum() != n_features:
            raise BadInputError(
                f"groups sizes {list(map(int, sizes))} sum to {int(sizes.sum())}, but X has "
                f"{n_features} features; the sizes must sum to n_features."
            )
        labels = np.repeat(np.arange(sizes.size), sizes)
    elif isinstance(groups, np.ndarray):
        labels = groups
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise BadInputError(
                f"groups given as an array must be 1-D integer labels (one per feature), got "
                f"shape {labels.shape} and dtype {labels.dtype} instead."
            )
        if labels.shape[0] != n_features:
            raise BadInputError(
                f"groups labels have length {labels.shape[0]}, but X has {n_features} "
                f"features; give one label per feature (or a list of block sizes)."
            )
    else:
        raise BadTypeError(
            f"groups must be a list of block sizes or a 1-D int ndarray of labels, got "
            f"{type(groups).__name__} instead."
        )
    names = np.unique(labels)
    columns = [np.flatnonzero(labels == g) for g in names]
    return labels, names, columns


class BandedRidgeCV(RegressorMixin, BaseEstimator):
    """Banded ridge regression with one regularisation per feature group, via himalaya.

    Parameters
    ----------
    groups : list of int or ndarray of int
        Feature groups. A **list or tuple** gives the sizes of consecutive blocks of
        columns (``[20, 30]``: columns 0-19, then 20-49). A **1-D int ndarray** of length
        ``n_features`` gives each column's group label (groups need not be contiguous;
        kernels are ordered by sorted label).
    alphas : sequence of float
        Global ridge strengths tried for each sampled group weighting (himalaya's
        ``solver_params["alphas"]``).
    cv : int or scikit-learn splitter
        Cross-validation for the search; an int means ``KFold(cv)`` without shuffling.
    n_iter : int
        Number of group weightings sampled from a Dirichlet distribution (random search).
    concentration : float or list of float
        Dirichlet concentration(s), cycled through (himalaya's default ``[0.1, 1.0]``:
        small values favour sparse weightings, i.e. some groups switched off).
    random_state : int or None
        Seed of the random search.
    backend : 'numpy' | 'torch' | 'torch_cuda'
        himalaya backend used during ``fit`` and ``predict`` (restored afterwards). An
        unavailable backend falls back, with a warning, to the current one.
    fit_intercept : bool
        Centre each feature group and ``Y`` on the training means and fit an intercept.
    solver_params : dict or None
        Extra parameters for ``himalaya.kernel_ridge.solve_multiple_kernel_ridge_random_search``
        (e.g. ``n_targets_batch``, ``n_alphas_batch`` for memory, ``progress_bar``).

    Attributes
    ----------
    deltas_ : ndarray of shape (n_groups, n_targets)
        Log kernel weights chosen per group and target (himalaya's ``deltas_``;
        shape (n_groups,) when fitted on a 1-D ``Y``).
    group_alphas_ : ndarray of shape (n_targets, n_groups)
        Equivalent per-group ridge strengths of the primal problem, ``exp(-deltas_).T``:
        larger means the group is regularised more (contributes less).
    best_alphas_ : ndarray of shape (n_targets,)
        himalaya's ``best_alphas_ = 1 / exp(deltas_).sum(0)``: the chosen global alpha
        (the sampled group weights sum to one).
    cv_scores_ : ndarray of shape (n_iter, n_targets)
        Cross-validation scores (negative squared error) of each sampled weighting.
    intercept_ : ndarray of shape (n_targets,)
        Only when ``fit_intercept``.
    groups_ : ndarray of shape (n_features,)
        Group label of each feature.
    group_names_ : ndarray of shape (n_groups,)
        Sorted distinct labels (0..n_groups-1 when sizes were given): the order of the
        rows of ``deltas_``.
    n_features_in_ : int
    backend_ : str
        himalaya backend the model was fitted with (and predicts with).
    pipeline_ : sklearn.pipeline.Pipeline
        The fitted himalaya pipeline (its arrays live in the chosen backend).
    """

    def __init__(
        self,
        groups,
        *,
        alphas=DEFAULT_BANDED_ALPHAS,
        cv=5,
        n_iter=100,
        concentration=(0.1, 1.0),
        random_state=None,
        backend="numpy",
        fit_intercept=True,
        solver_params=None,
    ):
        self.groups = groups
        self.alphas = alphas
        self.cv = cv
        self.n_iter = n_iter
        self.concentration = concentration
        self.random_state = random_state
        self.backend = backend
        self.fit_intercept = fit_intercept
        self.solver_params = solver_params

    def _make_pipeline(self, columns):
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        *_, ColumnKernelizer, Kernelizer, MultipleKernelRidgeCV = _import_himalaya()
        kernelizers = []
        for i, cols in enumerate(columns):
            steps = [Kernelizer(kernel="linear")]
            if self.fit_intercept:
                steps.insert(0, StandardScaler(with_mean=True, with_std=False))
            kernelizers.append((f"group_{i}", make_pipeline(*steps), cols))
        concentration = self.concentration
        if not np.isscalar(concentration):
            concentration = [float(c) for c in concentration]
        solver_params = dict(
            n_iter=self.n_iter,
            alphas=np.asarray(self.alphas, dtype=np.float64),
            concentration=concentration,
            progress_bar=False,
        )
        solver_params.update(self.solver_params or {})
        model = MultipleKernelRidgeCV(
            kernels="precomputed",
            solver="random_search",
            solver_params=solver_params,
            fit_intercept=self.fit_intercept,
            cv=self.cv,
            random_state=self.random_state,
        )
        return make_pipeline(ColumnKernelizer(kernelizers), model)

    def _check_X(self, X):
        X = check_array("X", X)
        if X.ndim != 2 or X.dtype.kind not in "biuf":
            raise BadInputError(
                f"X must be a 2-D array of real numbers, shape (n_samples, n_features), got "
                f"shape {X.shape} and dtype {X.dtype} instead."
            )
        return X.astype(np.float64, copy=False)

    def fit(self, X, Y):
        """Fit on ``X`` (n_samples, n_features) and ``Y`` (n_samples, n_targets) or
        (n_samples,)."""
        check_option("backend", self.backend, BACKENDS)
        alphas = np.asarray(self.alphas, dtype=np.float64)
        if alphas.ndim != 1 or alphas.size == 0 or np.any(~(alphas > 0)):
            raise BadInputError(f"alphas must be a 1-D sequence of positive floats, got {alphas}.")
        X = self._check_X(X)
        Y = check_array("Y", Y).astype(np.float64, copy=False)
        if Y.ndim not in (1, 2):
            raise BadInputError(
                f"Y must be 1-D or 2-D, shape (n_samples[, n_targets]), got shape {Y.shape}."
            )
        if Y.shape[0] != X.shape[0]:
            raise BadInputError(
                f"X and Y must have the same number of samples (rows), got X with "
                f"{X.shape[0]} and Y with {Y.shape[0]} instead."
            )
        labels, names, columns = _group_columns(self.groups, X.shape[1])
        if len(columns) == 1:
            logger.info("BandedRidgeCV with a single feature group is plain kernel ridge.")
        pipeline = self._make_pipeline(columns)
        with _himalaya_backend(self.backend) as backend:
            pipeline.fit(X, Y)
            self.backend_ = backend.name
            model = pipeline[-1]
            self.deltas_ = np.asarray(backend.to_numpy(model.deltas_))
            self.best_alphas_ = np.asarray(backend.to_numpy(model.best_alphas_))
            self.cv_scores_ = np.asarray(backend.to_numpy(model.cv_scores_))
            if self.fit_intercept:
                self.intercept_ = np.asarray(backend.to_numpy(model.intercept_))
        deltas = self.deltas_ if self.deltas_.ndim == 2 else self.deltas_[:, None]
        self.group_alphas_ = np.exp(-deltas).T
        self.pipeline_ = pipeline
        self.groups_ = labels
        self.group_names_ = names
        self.n_features_in_ = X.shape[1]
        logger.debug(
            "BandedRidgeCV: %d groups, %d targets, median best alpha %.3g",
            len(columns),
            self.group_alphas_.shape[0],
            float(np.median(self.best_alphas_)),
        )
        return self

    def predict(self, X):
        """Predictions of shape (n_samples, n_targets) (1-D if fitted on 1-D ``Y``)."""
        check_is_fitted(self, "pipeline_")
        X = self._check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise BadInputError(
                f"X has {X.shape[1]} features, but BandedRidgeCV was fitted with "
                f"{self.n_features_in_} features."
            )
        with _himalaya_backend(self.backend_) as backend:
            return np.asarray(backend.to_numpy(self.pipeline_.predict(X)))

    def score(self, X, Y, sample_weight=None):
        """Mean voxelwise Pearson r (nan targets ignored), as ``EncodingModel.score``."""
        from .encoding import compute_pearson_r

        if sample_weight is not None:
            raise BadInputError("BandedRidgeCV.score does not support sample_weight.")
        r = compute_pearson_r(Y, self.predict(X))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(np.nanmean(r))
