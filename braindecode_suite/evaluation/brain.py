"""Brain correlation: do the reconstructions evoke, through an encoding model, the measured responses?

MindEye2 (Scotti et al. 2024, ``src/final_evaluations.ipynb``) scores a reconstruction by
passing it through a trained encoding model (their GNet) and correlating the predicted
voxel responses with the measured, repeat-averaged test betas of the same stimulus:

``r_i = pearson(measured[i, roi], predicted[i, roi])`` over the voxels of a region, for each
test image ``i`` (torchmetrics ``PearsonCorrCoef(num_outputs=n_images)`` on the transposed
arrays), then the mean over images; one number per region (``nsdgeneral``, V1, V2, V3, V4,
higher visual). Any fitted encoder works here (ours: ridge from stimulus features to voxels,
:class:`~braindecode_suite.models.RidgeCV`); GNet's weights are not public in a loadable form.

Two reference levels come with each region, so a number can be read:

- ``chance``: the same correlation with the stimuli mismatched (reconstruction ``i``
  against the betas of test image ``j != i``, a fixed derangement). Encoders predict a
  shared mean response pattern, so chance is usually well above 0.
- ``stimulus`` (when the true stimuli are given): the encoder on the true images: what a
  perfect reconstruction would score with this encoder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..models.encoding import compute_pearson_r
from ..utils.validation import BadInputError, check_positive_int
from .metrics import _derangement, bootstrap_ci

__all__ = ["brain_correlation", "evaluate_brain_correlation", "per_image_correlation"]


def _as_matrix(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise BadInputError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise BadInputError(
            f"{name} must be a 2-D array of shape (n_images, n_voxels), got shape {arr.shape}."
        )
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise BadInputError(f"{name} holds NaN or infinite values.")
    return arr


def per_image_correlation(measured, predicted) -> np.ndarray:
    """Pearson r between the rows of two arrays (one value per image, over voxels).

    Parameters
    ----------
    measured, predicted : ndarray of shape (n_images, n_voxels)

    Returns
    -------
    r : ndarray of shape (n_images,)
        ``nan`` where a row is constant.
    """
    a = _as_matrix("measured", measured)
    b = _as_matrix("predicted", predicted)
    if a.shape != b.shape:
        raise BadInputError(
            f"measured and predicted must have the same shape, got {a.shape} and {b.shape}."
        )
    # images are the columns of the transposes: the encoding models' voxelwise r, per image
    return compute_pearson_r(a.T, b.T)


def _check_rois(rois, n_voxels: int) -> dict[str, np.ndarray]:
    if rois is None:
        return {"all": np.ones(n_voxels, dtype=bool)}
    if not isinstance(rois, Mapping) or not rois:
        raise BadInputError(
            f"rois must be a non-empty dict of region name -> voxel mask or indices, got "
            f"{type(rois).__name__}."
        )
    out = {}
    for name, sel in rois.items():
        sel = np.asarray(sel)
        if sel.dtype == bool:
            if sel.shape != (n_voxels,):
                raise BadInputError(
                    f"rois[{name!r}] is a boolean mask of shape {sel.shape}; the responses "
                    f"have {n_voxels} voxels, so it needs shape ({n_voxels},)."
                )
            mask = sel
        elif sel.dtype.kind in "iu" and sel.ndim == 1:
            if len(sel) and (sel.min() < 0 or sel.max() >= n_voxels):
                raise BadInputError(
                    f"rois[{name!r}] holds voxel indices outside [0, {n_voxels - 1}]."
                )
            mask = np.zeros(n_voxels, dtype=bool)
            mask[sel] = True
        else:
            raise BadInputError(
                f"rois[{name!r}] must be a boolean mask or a 1-D array of voxel indices, got "
                f"{sel.dtype} of shape {sel.shape}."
            )
        if mask.sum() < 2:
            raise BadInputError(
                f"rois[{name!r}] selects {int(mask.sum())} voxel(s); a correlation over voxels "
                "needs at least 2."
            )
        out[str(name)] = mask
    return out


def brain_correlation(
    measured,
    predicted,
    *,
    rois=None,
    stimulus_predicted=None,
    n_boot: int = 1000,
    random_state: int = 0,
    per_item: bool = False,
) -> dict:
    """Per-region brain correlation of encoder-predicted responses with measured ones.

    Parameters
    ----------
    measured : ndarray of shape (n_images, n_voxels)
        Measured (repeat-averaged) test responses, one row per test image.
    predicted : ndarray of shape (n_images, n_voxels)
        The encoding model's prediction from each image's reconstruction, same row order.
    rois : dict of str to mask or indices | None
        Regions over whose voxels to correlate (``None``: one region ``'all'``).
    stimulus_predicted : ndarray of shape (n_images, n_voxels) | None
        The encoder's prediction from the true stimuli: reported per region as
        ``"stimulus"`` (what this encoder gives a perfect reconstruction).
    n_boot : int
        Bootstrap resamples (over images) of the 95 % interval.
    random_state : int
        Seed of the bootstrap and of the mismatched-pair derangement.
    per_item : bool
        Also return each image's r (``"values"``).

    Returns
    -------
    results : dict
        ``{"BrainCorr/<region>": {"mean", "ci", "n", "n_voxels", "chance", "direction",
        "stimulus"?, "values"?}}``.
    """
    measured = _as_matrix("measured", measured)
    predicted = _as_matrix("predicted", predicted)
    if measured.shape != predicted.shape:
        raise BadInputError(
            f"measured {measured.shape} and predicted {predicted.shape} must have the same "
            "shape (n_images, n_voxels), rows in the same image order."
        )
    n = len(measured)
    if n < 2:
        raise BadInputError(f"brain correlation needs at least 2 test images, got {n}.")
    if stimulus_predicted is not None:
        stimulus_predicted = _as_matrix("stimulus_predicted", stimulus_predicted)
        if stimulus_predicted.shape != measured.shape:
            raise BadInputError(
                f"stimulus_predicted has shape {stimulus_predicted.shape}; it must match "
                f"measured {measured.shape}."
            )
    n_boot = check_positive_int("n_boot", n_boot)
    masks = _check_rois(rois, measured.shape[1])
    perm = _derangement(n, np.random.default_rng(random_state))
    results = {}
    for name, mask in masks.items():
        r = per_image_correlation(measured[:, mask], predicted[:, mask])
        ok = ~np.isnan(r)
        if not ok.any():
            results[f"BrainCorr/{name}"] = {
                "missing": f"every image has a constant measured or predicted pattern in {name}"
            }
            continue
        lo, hi = bootstrap_ci(r[ok], n_boot=n_boot, random_state=random_state)
        chance = per_image_correlation(measured[perm][:, mask], predicted[:, mask])
        entry = {
            "mean": float(r[ok].mean()),
            "ci": [float(lo), float(hi)],
            "n": int(ok.sum()),
            "n_voxels": int(mask.sum()),
            "chance": float(np.nanmean(chance)),
            "direction": "higher",
        }
        if stimulus_predicted is not None:
            entry["stimulus"] = float(
                np.nanmean(per_image_correlation(measured[:, mask], stimulus_predicted[:, mask]))
            )
        if per_item:
            entry["values"] = [float(v) for v in r]
        results[f"BrainCorr/{name}"] = entry
    return results


def evaluate_brain_correlation(
    recon,
    measured,
    *,
    encoder,
    features: Callable,
    rois=None,
    gt=None,
    n_boot: int = 1000,
    random_state: int = 0,
    per_item: bool = False,
) -> dict:
    """Brain correlation of reconstructions through a fitted encoding model.

    Parameters
    ----------
    recon : ndarray of shape (n_images, H, W, 3)
        Reconstructions, in the order of ``measured``'s rows.
    measured : ndarray of shape (n_images, n_voxels)
        Measured test responses (repeat-averaged as MindEye2 does).
    encoder : fitted regressor
        ``encoder.predict(features) -> (n_images, n_voxels)``, trained on the training
        stimuli's features with the same ``features`` function (e.g. the ``'encoder'``
        model a ridge stage with ``direction: encode`` saves).
    features : callable
        ``features(images) -> (n_images, n_features)`` array: the encoder's input space.
    rois, n_boot, random_state, per_item
        As for :func:`brain_correlation`.
    gt : ndarray of shape (n_images, H', W', 3) | None
        The true stimuli, for the ``"stimulus"`` reference level.

    Returns
    -------
    results : dict
        As :func:`brain_correlation`.
    """
    if not hasattr(encoder, "predict"):
        raise BadInputError(
            f"encoder must be a fitted regressor with .predict(), got {type(encoder).__name__}."
        )
    if not callable(features):
        raise BadInputError(f"features must be callable, got {type(features).__name__}.")
    measured = _as_matrix("measured", measured)
    if len(recon) != len(measured):
        raise BadInputError(
            f"recon has {len(recon)} images but measured has {len(measured)} rows; they must "
            "pair up in order."
        )

    def predict(images, name):
        x = np.asarray(features(images))
        if x.ndim != 2 or len(x) != len(images):
            raise BadInputError(
                f"features({name}) must return an array of shape (n_images, n_features), got "
                f"{x.shape}."
            )
        y = np.asarray(encoder.predict(x))
        if y.shape != measured.shape:
            raise BadInputError(
                f"the encoder predicts shape {y.shape} from {name}, but measured has shape "
                f"{measured.shape}: was it trained on these voxels?"
            )
        return y

    stim = None
    if gt is not None:
        if len(gt) != len(measured):
            raise BadInputError(f"gt has {len(gt)} images but measured has {len(measured)} rows.")
        stim = predict(gt, "gt")
    return brain_correlation(
        measured,
        predict(recon, "recon"),
        rois=rois,
        stimulus_predicted=stim,
        n_boot=n_boot,
        random_state=random_state,
        per_item=per_item,
    )
