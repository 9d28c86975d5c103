"""``RidgeCV``: one engine for every ridge in the package (decoders and encoders).

- one alpha per target chosen by exact leave-one-out (``cv='loo'``, identical to
  scikit-learn's ``RidgeCV(alpha_per_target=True)``), generalised CV (``cv='gcv'``, for
  NSD-scale problems), or K-fold / group K-fold (``cv=5``, ``cv=GroupKFold(5)`` with
  ``groups`` = sessions or runs);
- the dual (kernel) form when ``n_samples <= n_features``, else the primal form;
- targets in batches, so memory is bounded whatever the number of targets
  (``n_targets_batch``, or automatic from ``memory_limit``); :meth:`RidgeCV.fit_and_predict`
  streams predictions without ever holding all weights;
- NumPy/SciPy or torch (CPU or CUDA) backend, float32 by default, float64 on request;
- optional standardisation of features and targets, and Brain-Diffuser's rescaling of
  predictions to the training targets' statistics.

The solver mathematics is in :mod:`braindecode_suite.models._ridge_solvers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import KFold, check_cv
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from ..utils.io import atomic_dir
from ..utils.logging import logger, progress_disabled
from ..utils.validation import BadInputError, check_option
from . import _ridge_solvers as S
from ._backend import get_backend

__all__ = ["RidgeCV", "DEFAULT_ALPHAS"]

#: 13 alphas, 1e-1 ... 1e5 in half decades.
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))


def _target_batch_size(n, p, rank, n_targets, itemsize, memory_limit_gib, kfold):
    """Targets per batch so that the per-batch arrays fit in ``memory_limit_gib``."""
    per_target = itemsize * (4 * n + 2 * rank + p + (2 * n if kfold else 0))
    fixed = itemsize * (n * p + 2 * n * rank + rank * max(n, p))
    budget = max(memory_limit_gib * 2**30 - fixed, 64 * per_target)
    return int(max(1, min(n_targets, budget // per_target)))


class RidgeCV(RegressorMixin, BaseEstimator):
    """Ridge regression with the regularisation of each target chosen by cross-validation.

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularisation strengths, all > 0.
    cv : 'loo' | 'gcv' | int | cross-validation splitter
        'loo': exact efficient leave-one-out (scikit-learn's choice). 'gcv': generalised
        cross-validation (much cheaper with many targets). int: K-fold without
        shuffling. A splitter (e.g. ``GroupKFold``) uses ``groups`` given to ``fit``.
    alpha_per_target : bool
        One alpha per target (default), or one alpha for all (lowest mean error).
    fit_intercept : bool
        Centre X and Y with the training means.
    standardize_X, standardize_Y : bool
        Divide features / targets by their training standard deviation (constant ones
        are left unscaled). Weights are reported in the original units either way.
    rescale_predictions : bool
        Brain-Diffuser's step: z-score each predicted target across the samples given
        to ``predict``, then give it the training targets' mean and standard deviation.
    form : 'auto' | 'dual' | 'primal'
        'auto' picks the dual (kernel) form when n_samples <= n_features.
    backend : 'numpy' | 'torch'
        Array library for the solve; torch runs on ``device``.
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N'
        For the torch backend.
    dtype : 'float32' | 'float64'
        Precision of the solve.
    n_targets_batch : int | None
        Targets solved together; None chooses from ``memory_limit``.
    memory_limit : float
        GiB the per-batch arrays may use when ``n_targets_batch`` is None.

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, n_features)
    intercept_ : ndarray of shape (n_targets,)
    best_alphas_ : ndarray of shape (n_targets,)
    alpha_ : float or ndarray
        As scikit-learn: the array of per-target alphas, or the single alpha.
    form_ : str
        'dual' or 'primal', as used.
    """

    def __init__(
        self,
        alphas=DEFAULT_ALPHAS,
        *,
        cv="loo",
        alpha_per_target=True,
        fit_intercept=True,
        standardize_X=False,
        standardize_Y=False,
        rescale_predictions=False,
        form="auto",
        backend="numpy",
        device="auto",
        dtype="float32",
        n_targets_batch=None,
        memory_limit=2.0,
    ):
        self.alphas = alphas
        self.cv = cv
        self.alpha_per_target = alpha_per_target
        self.fit_intercept = fit_intercept
        self.standardize_X = standardize_X
        self.standardize_Y = standardize_Y
        self.rescale_predictions = rescale_predictions
        self.form = form
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.n_targets_batch = n_targets_batch
        self.memory_limit = memory_limit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        alphas = np.asarray(self.alphas, dtype=float).reshape(-1)
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise BadInputError(
                f"alphas must be a non-empty sequence of finite values > 0, got {self.alphas!r}."
            )
        check_option("form", self.form, ("auto", "dual", "primal"))
        if isinstance(self.cv, str):
            check_option("cv", self.cv, ("loo", "gcv"))
        if self.n_targets_batch is not None and int(self.n_targets_batch) < 1:
            raise BadInputError(f"n_targets_batch must be >= 1, got {self.n_targets_batch!r}.")
        if not self.memory_limit > 0:
            raise BadInputError(f"memory_limit must be > 0 GiB, got {self.memory_limit!r}.")
        return alphas

    def _splits(self, X, groups):
        if isinstance(self.cv, str):
            return None
        cv = KFold(int(self.cv)) if isinstance(self.cv, int | np.integer) else check_cv(self.cv)
        try:
            return list(cv.split(X, groups=groups))
        except ValueError as err:  # too many folds for the samples or groups, groups missing
            raise BadInputError(
                f"cv={self.cv!r} cannot split these {len(X)} samples: {err}"
            ) from None

    # ------------------------------------------------------------------ core
    def _prepare(self, X, n_targets, groups):
        """Validate, centre/scale X, decompose; return state for the target batches."""
        alphas_np = self._check_params()
        n, p = X.shape
        if n < 2:
            raise BadInputError(f"X needs at least 2 samples to fit a ridge, got n_samples={n}.")
        B = get_backend(self.backend, self.dtype, self.device)
        splits = self._splits(X, groups)
        Xb = B.asarray(X)
        x_mean = Xb.mean(0) if self.fit_intercept else B.zeros((p,))
        Xc = Xb - x_mean[None, :]
        if self.standardize_X:
            sd = ((Xc * Xc).mean(0)) ** 0.5
            x_scale = sd + (sd == 0) * 1.0  # constant features stay unscaled
            Xc = Xc / x_scale[None, :]
            # uncentred scaled X, needed only by K-fold (each fold centres itself)
            Xs_raw = Xb / x_scale[None, :] if splits is not None else None
        else:
            x_scale = B.full((p,), 1.0)
            Xs_raw = Xb
        dec = S.decompose(B, Xc, intercept=self.fit_intercept, form=self.form)
        batch = self.n_targets_batch or _target_batch_size(
            n,
            p,
            dec.rank,
            n_targets,
            np.dtype(self.dtype).itemsize,
            self.memory_limit,
            splits is not None,
        )
        logger.debug("ridge: %s form, rank %d, %d target(s) per batch", dec.form, dec.rank, batch)
        return dict(
            B=B,
            alphas=B.asarray(alphas_np),
            alphas_np=alphas_np,
            Xc=Xc,
            Xs_raw=Xs_raw,
            x_mean=x_mean,
            x_scale=x_scale,
            dec=dec,
            splits=splits,
            batch=int(batch),
        )

    def _batch_errors(self, st, Yb_raw, *, errors=False):
        """Centred/scaled targets, C, and the index of the best alpha of each target (or,
        with ``errors=True``, the CV errors (n_alphas, batch)) for one batch."""
        B, dec = st["B"], st["dec"]
        y_mean = Yb_raw.mean(0) if self.fit_intercept else B.zeros((Yb_raw.shape[1],))
        Yc = Yb_raw - y_mean[None, :]
        if self.standardize_Y:
            sd = ((Yc * Yc).mean(0)) ** 0.5
            y_scale = sd + (sd == 0) * 1.0
            Yc = Yc / y_scale[None, :]
        else:
            y_scale = B.full((Yb_raw.shape[1],), 1.0)
        C = dec.U.T @ Yc
        if self.cv == "loo" and not errors:
            best, n_eval = S.loo_best(B, dec, Yc, C, st["alphas"])
            st["n_evaluated"] = st.get("n_evaluated", 0) + n_eval
            return Yc, C, B.index(best), y_mean, y_scale
        if self.cv == "loo":
            err = S.loo_errors(B, dec, Yc, C, st["alphas"])
        elif self.cv == "gcv":
            err = S.gcv_errors(B, dec, Yc, C, st["alphas"])
        else:
            Ys = Yb_raw / y_scale[None, :]
            err = S.kfold_errors(
                B,
                st["Xs_raw"],
                Ys,
                st["alphas"],
                st["splits"],
                intercept=self.fit_intercept,
                form=self.form,
            )
        return Yc, C, (err if errors else err.argmin(0)), y_mean, y_scale

    def _batch_coefs(self, st, C, target_alphas, y_mean, y_scale):
        B = st["B"]
        W = S.coefficients(B, st["dec"], st["Xc"], C, target_alphas)  # (p, b), scaled units
        W = W * y_scale[None, :] / st["x_scale"][:, None]
        intercept = y_mean - st["x_mean"] @ W if self.fit_intercept else B.zeros((C.shape[1],))
        return W, intercept

    def _iter_batches(self, st, Y, n_targets):
        """Per target batch: slice, C (rank, b), index of each target's alpha (b,), and the
        batch's training target means and scales (b,)."""
        B = st["B"]
        batch = st["batch"]
        starts = range(0, n_targets, batch)
        single = None
        if not self.alpha_per_target:  # pass 1: mean error over all targets
            total = B.zeros((len(st["alphas_np"]),))
            for start in starts:
                err = self._batch_errors(st, B.asarray(_columns(Y, start, batch)), errors=True)[2]
                total = total + err.sum(1)
            single = int(B.to_numpy(total).argmin())
        bar = tqdm(
            total=n_targets,
            desc="ridge",
            unit="target",
            disable=progress_disabled() or len(starts) < 2,
        )
        for start in starts:
            Yb = B.asarray(_columns(Y, start, batch))
            _check_finite_block("Y", Yb, start)
            Yc, C, idx, y_mean, y_scale = self._batch_errors(st, Yb)
            if single is not None:
                idx = B.index(np.full(Yb.shape[1], single))
            bar.update(Yb.shape[1])
            yield slice(start, start + Yb.shape[1]), Yc, C, idx, y_mean, y_scale
        bar.close()

    # ------------------------------------------------------------------ API
    def fit(self, X, y, groups=None):
        """Fit; ``groups`` (e.g. session of each sample) is passed to a group splitter."""
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=(np.float64, np.float32)
        )
        self._y_1d = y.ndim == 1
        Y = y[:, None] if self._y_1d else y
        st = self._prepare(X, Y.shape[1], groups)
        B = st["B"]
        t = Y.shape[1]
        coef = np.empty((t, X.shape[1]), dtype=self.dtype)
        intercept = np.empty(t, dtype=self.dtype)
        best = np.empty(t, dtype=float)
        y_std = np.empty(t, dtype=float)
        for sl, Yc, C, idx, y_mean, y_scale in self._iter_batches(st, Y, t):
            W, b0 = self._batch_coefs(st, C, st["alphas"][idx], y_mean, y_scale)
            coef[sl] = B.to_numpy(W).T
            intercept[sl] = B.to_numpy(b0)
            best[sl] = st["alphas_np"][np.asarray(B.to_numpy(idx))]
            y_std[sl] = B.to_numpy(((Yc * Yc).mean(0)) ** 0.5 * y_scale)
        self.coef_ = coef[0] if self._y_1d else coef
        self.intercept_ = intercept[0] if self._y_1d else intercept
        self.best_alphas_ = best
        self.alpha_ = best if self.alpha_per_target else float(best[0])
        self.form_ = st["dec"].form
        self.y_train_mean_ = Y.mean(0)
        self.y_train_std_ = y_std
        return self

    def _rescale(self, pred):
        if len(pred) < 2:
            raise BadInputError("rescale_predictions needs at least 2 samples to predict.")
        sd = pred.std(0)
        z = (pred - pred.mean(0)) / np.where(sd > 0, sd, 1.0)
        return z * self.y_train_std_ + self.y_train_mean_

    def predict(self, X):
        """Predictions, shape (n_samples,) or (n_samples, n_targets)."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        dtype = np.promote_types(X.dtype, self.coef_.dtype)  # float64 input -> float64 out
        coef = np.atleast_2d(self.coef_).astype(dtype, copy=False)
        pred = X.astype(dtype, copy=False) @ coef.T + np.atleast_1d(self.intercept_).astype(dtype)
        if self.rescale_predictions:
            pred = self._rescale(pred)
        return pred[:, 0] if getattr(self, "_y_1d", False) else pred

    def fit_and_predict(self, X, Y, X_test, *, out=None, groups=None):
        """Fit on (X, Y) and predict ``X_test`` target batch by target batch.

        Neither all the weights nor all of ``Y`` are ever in memory at once: ``Y`` may be
        any 2-D array-like that supports ``Y[:, a:b]`` (a NumPy array or memmap, an h5py
        dataset, a lazy generator object), and predictions go into ``out`` (anything
        supporting ``out[:, a:b] = block``, e.g. a memmap) when given.

        Returns
        -------
        predictions : ndarray of shape (n_test, n_targets) or ``out``
        best_alphas : ndarray of shape (n_targets,)
        """
        X = np.asarray(X)
        X_test = np.asarray(X_test)
        if X.ndim != 2 or X_test.ndim != 2 or X_test.shape[1] != X.shape[1]:
            raise BadInputError(
                f"X and X_test must be 2-D with the same number of features, got {X.shape} "
                f"and {X_test.shape}."
            )
        if len(Y.shape) != 2 or Y.shape[0] != X.shape[0]:
            raise BadInputError(
                f"Y must be 2-D with one row per sample of X ({X.shape[0]}), got shape "
                f"{tuple(Y.shape)}."
            )
        _check_finite_block("X", X, 0)
        _check_finite_block("X_test", X_test, 0)
        t = Y.shape[1]
        st = self._prepare(X, t, groups)
        B = st["B"]
        dec = st["dec"]
        Xt = (B.asarray(X_test) - st["x_mean"][None, :]) / st["x_scale"][None, :]
        # predictions through the decomposition, never forming the weights:
        # dual X_t Xᵀ U diag(1/(s+α)) C, primal X_t V diag(√s/(s+α)) C
        P = (Xt @ st["Xc"].T) @ dec.U if dec.form == "dual" else Xt @ dec.V
        if out is None:
            out = np.empty((len(X_test), t), dtype=self.dtype)
        best = np.empty(t, dtype=float)
        for sl, Yc, C, idx, y_mean, y_scale in self._iter_batches(st, Y, t):
            a = st["alphas"][idx]
            num = 1.0 if dec.form == "dual" else dec.s[:, None] ** 0.5
            pred = P @ (num / (dec.s[:, None] + a[None, :]) * C)
            if self.rescale_predictions:
                sd = ((pred - pred.mean(0)) ** 2).mean(0) ** 0.5
                y_std = ((Yc * Yc).mean(0)) ** 0.5
                pred = (pred - pred.mean(0)) / (sd + (sd == 0) * 1.0) * y_std
            out[:, sl] = B.to_numpy(pred * y_scale[None, :] + y_mean[None, :])
            best[sl] = st["alphas_np"][np.asarray(B.to_numpy(idx))]
        self.form_ = st["dec"].form
        return out, best

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically; no pickle)."""
        from safetensors.numpy import save_file

        check_is_fitted(self, "coef_")
        folder = Path(folder)
        params = {}
        for k, v in self.get_params().items():
            if k == "cv" and not isinstance(v, str | int):
                v = repr(v)
            params[k] = list(v) if isinstance(v, tuple | np.ndarray) else v
        with atomic_dir(folder) as tmp:
            (tmp / "config.json").write_text(
                json.dumps(
                    {
                        "class": type(self).__name__,
                        "params": params,
                        "n_features_in": int(self.n_features_in_),
                        "y_1d": bool(self._y_1d),
                        "form": self.form_,
                    },
                    indent=2,
                )
            )
            tensors = {
                k: np.ascontiguousarray(np.atleast_1d(getattr(self, k)))
                for k in ("coef_", "intercept_", "best_alphas_", "y_train_mean_", "y_train_std_")
            }
            save_file(tensors, str(tmp / "model.safetensors"))
        return folder

    @classmethod
    def from_pretrained(cls, folder) -> RidgeCV:
        """Rebuild an estimator saved with :meth:`save_pretrained`."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise BadInputError(f"{str(folder)!r} holds no config.json: not a saved RidgeCV.")
        cfg = json.loads(cfg_path.read_text())
        params = dict(cfg["params"])
        if isinstance(params.get("cv"), str) and params["cv"] not in ("loo", "gcv"):
            params["cv"] = "loo"  # a splitter object was used; it is not needed to predict
        model = cls(**params)
        for k, v in load_file(str(folder / "model.safetensors")).items():
            setattr(model, k, v)
        model.n_features_in_ = cfg["n_features_in"]
        model._y_1d = cfg["y_1d"]
        model.form_ = cfg["form"]
        if model._y_1d:
            model.coef_ = model.coef_.reshape(-1)
            model.intercept_ = model.intercept_.reshape(())
        model.alpha_ = (
            model.best_alphas_ if model.alpha_per_target else float(model.best_alphas_[0])
        )
        return model


def _columns(Y, start, size):
    block = Y[:, start : start + size]
    return np.asarray(block)


def _check_finite_block(name, arr, start):
    if isinstance(arr, np.ndarray):
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise BadInputError(
                f"{name} contains NaN or inf (first at row {bad[0]}, column "
                f"{start + (bad[1] if len(bad) > 1 else 0)}); remove or impute them first."
            )
    else:  # a torch tensor
        import torch

        if not torch.isfinite(arr).all():
            raise BadInputError(
                f"{name} contains NaN or inf values (target batch from column "
                f"{start}); remove or impute them first."
            )
