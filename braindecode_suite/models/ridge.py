"""Ridge decoder: brain activity -> stimulus features.

This first version delegates the solve to scikit-learn's ``RidgeCV`` with one
alpha per target chosen by efficient leave-one-out (generalised)
cross-validation. Issue #3 replaces the engine (primal/dual choice, target
batching, torch backend) behind the same estimator API.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import RidgeCV
from sklearn.utils.validation import check_is_fitted, validate_data

from ..utils.io import atomic_dir
from ..utils.validation import BadInputError

__all__ = ["RidgeDecoder"]

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 5, 13))


class RidgeDecoder(RegressorMixin, BaseEstimator):
    """Ridge regression with one regularisation per target, chosen by LOO-CV.

    Parameters
    ----------
    alphas : sequence of float
        Candidate regularisation strengths (all > 0).
    standardize_X : bool
        Z-score the features with the training mean and std first.
    rescale_predictions : bool
        Brain-Diffuser's step: z-score each predicted target across test
        samples, then give it the training targets' mean and std.

    Attributes
    ----------
    coef_ : ndarray of shape (n_targets, n_features)
    intercept_ : ndarray of shape (n_targets,)
    alphas_ : ndarray of shape (n_targets,)
        The chosen alpha of each target.
    """

    def __init__(self, alphas=DEFAULT_ALPHAS, standardize_X=True, rescale_predictions=False):
        self.alphas = alphas
        self.standardize_X = standardize_X
        self.rescale_predictions = rescale_predictions

    def fit(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=np.float64)
        alphas = np.asarray(self.alphas, dtype=float)
        if alphas.ndim != 1 or alphas.size == 0 or np.any(alphas <= 0):
            raise BadInputError(
                f"alphas must be a non-empty list of values > 0, got {self.alphas!r}."
            )
        if X.shape[0] < 2:
            raise BadInputError(f"X needs at least 2 samples to fit, got {X.shape[0]}.")
        self._y_1d = y.ndim == 1
        Y = y[:, None] if self._y_1d else y
        if self.standardize_X:
            self.x_mean_ = X.mean(0)
            sd = X.std(0)
            self.x_scale_ = np.where(sd > 0, sd, 1.0)
        else:
            self.x_mean_ = np.zeros(X.shape[1])
            self.x_scale_ = np.ones(X.shape[1])
        Xs = (X - self.x_mean_) / self.x_scale_
        model = RidgeCV(alphas=alphas, alpha_per_target=Y.shape[1] > 1).fit(Xs, Y)
        coef = np.atleast_2d(model.coef_)
        self.coef_ = coef / self.x_scale_[None, :]
        self.intercept_ = np.atleast_1d(model.intercept_) - self.coef_ @ self.x_mean_
        self.alphas_ = np.broadcast_to(np.atleast_1d(model.alpha_), (Y.shape[1],)).copy()
        self.y_mean_ = Y.mean(0)
        self.y_std_ = Y.std(0)
        return self

    def predict(self, X):
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        pred = X @ self.coef_.T + self.intercept_
        if self.rescale_predictions:
            if len(pred) < 2:
                raise BadInputError("rescale_predictions needs at least 2 test samples.")
            sd = pred.std(0)
            pred = (pred - pred.mean(0)) / np.where(sd > 0, sd, 1.0) * self.y_std_ + self.y_mean_
        return pred[:, 0] if getattr(self, "_y_1d", False) else pred

    def save_pretrained(self, folder) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (atomically, no pickle)."""
        from safetensors.numpy import save_file

        check_is_fitted(self, "coef_")
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            (tmp / "config.json").write_text(
                json.dumps(
                    {
                        "class": type(self).__name__,
                        "params": {
                            k: (list(v) if isinstance(v, tuple | np.ndarray) else v)
                            for k, v in self.get_params().items()
                        },
                        "n_features_in": int(self.n_features_in_),
                        "y_1d": bool(self._y_1d),
                    },
                    indent=2,
                )
            )
            tensors = {
                k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                for k in (
                    "coef_",
                    "intercept_",
                    "alphas_",
                    "y_mean_",
                    "y_std_",
                    "x_mean_",
                    "x_scale_",
                )
            }
            save_file(tensors, str(tmp / "model.safetensors"))
        return folder

    @classmethod
    def from_pretrained(cls, folder) -> RidgeDecoder:
        """Rebuild a decoder saved with :meth:`save_pretrained`."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise BadInputError(f"{str(folder)!r} holds no config.json: not a saved RidgeDecoder.")
        cfg = json.loads(cfg_path.read_text())
        model = cls(**cfg["params"])
        for k, v in load_file(str(folder / "model.safetensors")).items():
            setattr(model, k, v.astype(np.float64))
        model.n_features_in_ = cfg["n_features_in"]
        model._y_1d = cfg["y_1d"]
        return model
