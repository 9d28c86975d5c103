"""Voxelwise encoding models: scores, NSD noise ceilings, and a features -> voxels estimator.

Conventions
-----------
- Scores are computed column by column (one value per voxel / target) over samples (rows).
- A column whose score is undefined (constant ``y_true``, or constant ``y_pred`` for Pearson r)
  gets ``nan``, never a warning; summaries use ``nanmedian`` / ``nanmean``.
- Noise ceilings follow the Natural Scenes Dataset (Allen et al. 2022, Nat. Neurosci.,
  "Noise ceiling" in Methods): ``ncsnr`` from repeated trials, then
  ``NC = 100 * ncsnr**2 / (ncsnr**2 + 1 / n_repeats)`` in percent of variance.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..utils.logging import logger
from ..utils.validation import BadInputError, check_array, check_option

__all__ = [
    "compute_pearson_r",
    "compute_r2",
    "compute_ncsnr",
    "compute_noise_ceiling",
    "noise_normalized",
    "score_encoding",
    "EncodingModel",
]


# --------------------------------------------------------------------------- checks
def _as_2d(name, value):
    """Return a finite float 2-D array; a 1-D array becomes one column."""
    arr = check_array(name, value)
    if arr.dtype.kind not in "biuf":
        raise BadInputError(f"{name} must hold real numbers, got dtype {arr.dtype} instead.")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise BadInputError(
            f"{name} must be a 1-D or 2-D array of shape (n_samples[, n_targets]), "
            f"got shape {arr.shape} instead."
        )
    return arr.astype(np.float64, copy=False)


def _check_pair(y_true, y_pred, *, min_samples=2):
    y_true = _as_2d("y_true", y_true)
    y_pred = _as_2d("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise BadInputError(
            f"y_true and y_pred must have the same shape (n_samples, n_targets), "
            f"got y_true {y_true.shape} and y_pred {y_pred.shape} instead."
        )
    if y_true.shape[0] < min_samples:
        raise BadInputError(
            f"y_true must have at least {min_samples} samples (rows), "
            f"got {y_true.shape[0]} instead."
        )
    return y_true, y_pred


# --------------------------------------------------------------------------- scores
def compute_pearson_r(y_true, y_pred) -> np.ndarray:
    """Pearson correlation between each column of ``y_true`` and ``y_pred``.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples, n_targets) or (n_samples,)
        Measured and predicted responses. A 1-D input is one target.

    Returns
    -------
    r : ndarray of shape (n_targets,)
        Correlation over samples, per target. ``nan`` where either column is constant.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    a = y_true - y_true.mean(axis=0)
    b = y_pred - y_pred.mean(axis=0)
    num = (a * b).sum(axis=0)
    den = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    r = np.full(num.shape, np.nan)
    ok = den > 0
    r[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return r


def compute_r2(y_true, y_pred) -> np.ndarray:
    """Coefficient of determination per column, ``1 - SS_res / SS_tot``.

    Equal to ``sklearn.metrics.r2_score(y_true, y_pred, multioutput="raw_values")`` wherever
    ``y_true`` varies. For a constant ``y_true`` column R² is undefined and we return ``nan``
    (scikit-learn returns 1.0 or 0.0 with ``force_finite=True``, its default, and nan / -inf
    with ``force_finite=False``); a ``nan`` cannot be mistaken for a real score and is
    skipped by the ``nanmedian`` summaries.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples, n_targets) or (n_samples,)

    Returns
    -------
    r2 : ndarray of shape (n_targets,)
        In ]-inf, 1].
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.full(ss_res.shape, np.nan)
    ok = ss_tot > 0
    r2[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
    return r2


# --------------------------------------------------------------------------- noise ceiling
def compute_ncsnr(betas, stimulus_ids, *, zscore: bool = True) -> np.ndarray:
    """Noise-ceiling signal-to-noise ratio per voxel (NSD, Allen et al. 2022).

    1. With ``zscore=True`` each voxel is z-scored across all trials given (mean 0, standard
       deviation with ``ddof=1``, as MATLAB's ``zscore`` used by NSD). NSD z-scores within
       each scan session; to do that, z-score per session yourself and pass ``zscore=False``.
    2. Noise variance = mean, over stimuli shown at least twice, of the variance across that
       stimulus' repeats (``ddof=1``). Every such stimulus counts once.
    3. Signal variance = ``max(0, 1 - noise variance)``.
    4. ``ncsnr = sqrt(signal variance) / sqrt(noise variance)``.

    Parameters
    ----------
    betas : ndarray of shape (n_trials, n_voxels)
        Single-trial responses.
    stimulus_ids : array-like of shape (n_trials,)
        Stimulus shown on each trial (any hashable values: ints, strings).
    zscore : bool
        Z-score each voxel across the trials first (see above).

    Returns
    -------
    ncsnr : ndarray of shape (n_voxels,)
        ``nan`` for a voxel that is constant across trials (cannot be z-scored) and ``inf``
        for one without noise.

    Raises
    ------
    BadInputError
        If no stimulus has two or more trials.
    """
    betas = check_array("betas", betas, ndim=2).astype(np.float64, copy=False)
    ids = np.asarray(stimulus_ids)
    if ids.ndim != 1 or ids.shape[0] != betas.shape[0]:
        raise BadInputError(
            f"stimulus_ids must be 1-D with one entry per trial (row of betas), i.e. shape "
            f"({betas.shape[0]},), got shape {ids.shape} instead."
        )
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    repeated = counts >= 2
    if not repeated.any():
        raise BadInputError(
            f"compute_ncsnr needs stimuli shown at least twice, but each of the "
            f"{len(counts)} stimuli in stimulus_ids has a single trial."
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        if zscore:
            sd = betas.std(axis=0, ddof=1)
            betas = (betas - betas.mean(axis=0)) / np.where(sd > 0, sd, np.nan)
        # per-stimulus sums -> unbiased variances across repeats
        n_stim = len(counts)
        sums = np.zeros((n_stim, betas.shape[1]))
        sq = np.zeros((n_stim, betas.shape[1]))
        np.add.at(sums, inverse, betas)
        np.add.at(sq, inverse, betas**2)
        c = counts[repeated, None].astype(np.float64)
        var = (sq[repeated] - sums[repeated] ** 2 / c) / (c - 1)
        noise_var = np.maximum(var, 0.0).mean(axis=0)
        signal_var = np.maximum(1.0 - noise_var, 0.0)
        ncsnr = np.sqrt(signal_var) / np.sqrt(noise_var)
    logger.debug(
        "compute_ncsnr: %d of %d stimuli repeated, median ncsnr %.3g",
        int(repeated.sum()),
        n_stim,
        float(np.nanmedian(ncsnr)) if np.isfinite(ncsnr).any() else float("nan"),
    )
    return ncsnr


def compute_noise_ceiling(ncsnr, n_repeats) -> np.ndarray:
    """Noise ceiling in percent of variance explainable (NSD's formula).

    ``NC = 100 * ncsnr**2 / (ncsnr**2 + 1 / n_repeats)``.

    Parameters
    ----------
    ncsnr : float or ndarray of shape (n_voxels,)
        From :func:`compute_ncsnr` (or NSD's ``ncsnr.nii.gz``).
    n_repeats : int or array-like of shape (n_test_stimuli,)
        Number of trials averaged per test stimulus (e.g. 3 for NSD's repeat-averaged test
        set, 1 for single trials). An array gives the count for each test stimulus, and
        ``1 / n_repeats`` is replaced by its mean over stimuli, as NSD does for test sets
        with unequal repeats: ``(A/3 + B/2 + C/1) / (A + B + C)``.

    Returns
    -------
    nc : ndarray, shape of ``ncsnr``
        In [0, 100]; 100 where ``ncsnr`` is inf, ``nan`` where it is nan.
    """
    ncsnr = np.asarray(ncsnr, dtype=np.float64)
    if np.any(ncsnr < 0):
        raise BadInputError(
            f"ncsnr must be >= 0, got {int(np.sum(ncsnr < 0))} negative value(s) "
            f"(min {np.nanmin(ncsnr):.3g})."
        )
    reps = np.asarray(n_repeats)
    if reps.ndim > 1 or reps.size == 0 or reps.dtype.kind not in "iuf" or np.any(reps < 1):
        raise BadInputError(
            f"n_repeats must be an int >= 1 or a 1-D array of such counts (one per test "
            f"stimulus), got {n_repeats!r} instead."
        )
    inv_n = float(np.mean(1.0 / reps.astype(np.float64)))
    s2 = ncsnr**2
    with np.errstate(invalid="ignore"):
        nc = np.where(np.isinf(s2), 100.0, 100.0 * s2 / (s2 + inv_n))
    return nc


def noise_normalized(score, noise_ceiling, *, kind: str = "r2") -> np.ndarray:
    """Score relative to the noise ceiling (1.0 = at the ceiling).

    - ``kind="r2"``: ``100 * R2 / NC``. ``R2`` is a fraction and ``NC`` a percentage, so
      this is the ratio of explained to explainable variance: 0.5 means half of the
      explainable variance is explained (multiply by 100 to report "% of noise ceiling").
    - ``kind="r"``: ``100 * sign(r) * r**2 / NC`` — the squared correlation as variance
      explained; the sign is kept so that an anti-correlated prediction is not counted
      as a good one.

    Voxels with ``NC <= 0`` (or nan) have no explainable variance and get ``nan``.
    Values can exceed 1 by chance (noisy ceiling estimates) and go below 0 (R² < 0).

    Parameters
    ----------
    score : ndarray of shape (n_voxels,)
        R² (fraction, e.g. from :func:`compute_r2`) or Pearson r.
    noise_ceiling : ndarray of shape (n_voxels,) or float
        Percent, from :func:`compute_noise_ceiling`.
    kind : 'r2' | 'r'

    Returns
    -------
    ndarray of shape (n_voxels,)
        Fraction of the noise ceiling reached.
    """
    check_option("kind", kind, ("r2", "r"))
    score = np.asarray(score, dtype=np.float64)
    nc = np.asarray(noise_ceiling, dtype=np.float64)
    try:
        score, nc = np.broadcast_arrays(score, nc)
    except ValueError:
        raise BadInputError(
            f"score and noise_ceiling must have the same shape (n_voxels,), got "
            f"{score.shape} and {nc.shape} instead."
        ) from None
    explained = score if kind == "r2" else np.sign(score) * score**2
    out = np.full(score.shape, np.nan)
    ok = nc > 0
    out[ok] = 100.0 * explained[ok] / nc[ok]
    return out


def _nanstat(func, values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(func(values)) if np.size(values) else float("nan")


def score_encoding(y_true, y_pred, *, noise_ceiling=None) -> dict:
    """Voxelwise Pearson r and R², optionally normalised by the noise ceiling.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n_samples, n_voxels)
        Measured and predicted test responses (trial-averaged the same way as assumed by
        the ``n_repeats`` used for the noise ceiling).
    noise_ceiling : ndarray of shape (n_voxels,) or None
        Percent, from :func:`compute_noise_ceiling`.

    Returns
    -------
    dict
        ``"pearson_r"``, ``"r2"`` (ndarrays of shape (n_voxels,)), ``"nc_normalized_r2"``
        (only with a noise ceiling) and ``"summary"``: ``median_r``, ``mean_r``,
        ``median_r2`` and ``median_nc_normalized_r2`` (only with a noise ceiling), all
        ignoring nan voxels.
    """
    y_true, y_pred = _check_pair(y_true, y_pred)
    r = compute_pearson_r(y_true, y_pred)
    r2 = compute_r2(y_true, y_pred)
    out = {"pearson_r": r, "r2": r2}
    summary = {
        "median_r": _nanstat(np.nanmedian, r),
        "mean_r": _nanstat(np.nanmean, r),
        "median_r2": _nanstat(np.nanmedian, r2),
    }
    if noise_ceiling is not None:
        nc = np.asarray(noise_ceiling, dtype=np.float64)
        if nc.shape not in ((), (y_true.shape[1],)):
            raise BadInputError(
                f"noise_ceiling must have shape (n_voxels,) = ({y_true.shape[1]},), "
                f"got {nc.shape} instead."
            )
        out["nc_normalized_r2"] = noise_normalized(r2, nc, kind="r2")
        summary["median_nc_normalized_r2"] = _nanstat(np.nanmedian, out["nc_normalized_r2"])
    out["summary"] = summary
    return out


# --------------------------------------------------------------------------- estimator
class EncodingModel(RegressorMixin, BaseEstimator):
    """Encoding model: stimulus features -> voxel responses.

    A thin scikit-learn wrapper that checks inputs, fits a clone of ``estimator`` and
    adds voxelwise scoring.

    Parameters
    ----------
    estimator : regressor or None
        Any multi-output scikit-learn regressor. ``None`` uses
        :class:`braindecode_suite.models.ridge.RidgeCV` with its defaults (one alpha per
        voxel).

    Attributes
    ----------
    estimator_ : regressor
        The fitted clone.
    n_features_in_ : int
    n_targets_ : int
        Number of voxels (1 for a 1-D ``Y``).
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def _check_X(self, X, name="X"):
        X = check_array(name, X)
        if X.ndim != 2:
            raise BadInputError(
                f"{name} must be a 2-D array of shape (n_samples, n_features), got shape "
                f"{X.shape} instead."
            )
        if X.dtype.kind not in "biuf":
            raise BadInputError(f"{name} must hold real numbers, got dtype {X.dtype} instead.")
        return X

    def fit(self, X, Y, **fit_params):
        """Fit the estimator on features ``X`` (n_samples, n_features) and responses
        ``Y`` (n_samples, n_voxels) or (n_samples,). ``fit_params`` go to its ``fit``
        (e.g. ``groups=`` for our RidgeCV)."""
        X = self._check_X(X)
        Y = check_array("Y", Y)
        if Y.ndim not in (1, 2):
            raise BadInputError(
                f"Y must be a 1-D or 2-D array of shape (n_samples[, n_voxels]), got shape "
                f"{Y.shape} instead."
            )
        if Y.shape[0] != X.shape[0]:
            raise BadInputError(
                f"X and Y must have the same number of samples (rows), got X with "
                f"{X.shape[0]} and Y with {Y.shape[0]} instead."
            )
        if self.estimator is None:
            from .ridge import RidgeCV

            estimator = RidgeCV()
        else:
            estimator = clone(self.estimator)
        self.estimator_ = estimator.fit(X, Y, **fit_params)
        self.n_features_in_ = X.shape[1]
        self.n_targets_ = 1 if Y.ndim == 1 else Y.shape[1]
        return self

    def predict(self, X):
        """Predicted responses, shape (n_samples, n_voxels) (1-D if fitted on 1-D ``Y``)."""
        check_is_fitted(self, "estimator_")
        X = self._check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise BadInputError(
                f"X has {X.shape[1]} features, but this EncodingModel was fitted with "
                f"{self.n_features_in_} features."
            )
        return np.asarray(self.estimator_.predict(X))

    def score(self, X, Y, sample_weight=None):
        """Mean Pearson r over voxels (nan voxels ignored).

        The field's usual summary of an encoding model; scikit-learn's default R² would be
        an equally valid choice, see :meth:`score_voxels` for both.
        """
        if sample_weight is not None:
            raise BadInputError("EncodingModel.score does not support sample_weight.")
        r = compute_pearson_r(Y, self.predict(X))
        return _nanstat(np.nanmean, r)

    def score_voxels(self, X, Y, *, noise_ceiling=None) -> dict:
        """:func:`score_encoding` of the predictions for ``X`` against ``Y``."""
        return score_encoding(Y, self.predict(X), noise_ceiling=noise_ceiling)
