"""Evaluate reconstructed images against the stimuli: one call, every metric.

``evaluate_images(recon, gt)`` is usable on any two folders' worth of images;
the pipeline's evaluation stage is a thin adapter over it.
"""

from __future__ import annotations

import numpy as np

from ..features.extractors import check_images
from ..utils.validation import BadInputError
from .metrics import (
    bootstrap_ci,
    compute_pixcorr,
    compute_ssim,
    identification_pvalue,
    mismatched_baseline,
    two_way_identification,
)

__all__ = ["evaluate_images"]


def _summary(values, *, n_boot, random_state, chance=None, p=None) -> dict:
    values = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(values, n_boot=n_boot, random_state=random_state)
    out = {"mean": float(values.mean()), "ci": [float(lo), float(hi)], "n": int(len(values))}
    if chance is not None:
        out["chance"] = float(chance)
    if p is not None:
        out["p_value"] = float(p)
    return out


def evaluate_images(
    recon,
    gt,
    *,
    size: int = 425,
    networks=None,
    decoded_features=None,
    n_boot: int = 1000,
    random_state: int = 0,
    low_level: bool = True,
) -> dict:
    """Low-level and identification metrics of reconstructions.

    Parameters
    ----------
    recon, gt : ndarray of shape (n_images, H, W, 3)
        Reconstructions and the matching stimuli (uint8, or float in [0, 1]).
    size : int
        Both images are resized to ``size`` px for PixCorr and SSIM (425 in the
        Brain-Diffuser / MindEye protocol).
    networks : dict of str to Extractor | None
        Feature networks for two-way identification between the features of
        ``gt`` and of ``recon`` (e.g. ``{'effnet': make_extractor('efficientnet_lite0')}``).
        Each must already hold its weights; nothing is downloaded or substituted.
    decoded_features : dict of str to (true, predicted) | None
        Feature-space two-way identification of decoded features against the
        stimuli's true features (both arrays of shape (n_images, ...)).
    n_boot : int
        Bootstrap resamples for the 95 % confidence intervals.
    random_state : int
        Seed of the bootstrap and of the mismatched-pair chance baseline.
    low_level : bool
        Compute PixCorr and SSIM (off when a paper protocol computes its own).

    Returns
    -------
    metrics : dict
        ``{name: {"mean", "ci", "n", "chance", "p_value"?}}``. PixCorr and SSIM carry as
        ``chance`` the same metric on mismatched pairs (reconstruction i against
        stimulus j ≠ i); two-way identification has chance 0.5 and a binomial p-value.
    """
    recon = check_images("recon", recon)
    gt = check_images("gt", gt)
    if len(recon) != len(gt):
        raise BadInputError(
            f"recon has {len(recon)} images but gt has {len(gt)}; they must pair up."
        )
    if len(gt) < 2:
        raise BadInputError(f"evaluation needs at least 2 images, got {len(gt)}.")
    kw = {"n_boot": n_boot, "random_state": random_state}
    metrics = {}
    if low_level:
        pix = compute_pixcorr(recon, gt, size=size)
        pix_chance = mismatched_baseline(
            compute_pixcorr, recon, gt, random_state=random_state, size=size
        )
        metrics["pixcorr"] = _summary(pix, chance=float(np.mean(pix_chance)), **kw)
        ssim = compute_ssim(recon, gt, size=size)
        ssim_chance = mismatched_baseline(
            compute_ssim, recon, gt, random_state=random_state, size=size
        )
        metrics["ssim"] = _summary(ssim, chance=float(np.mean(ssim_chance)), **kw)
    for name, extractor in (networks or {}).items():
        feats_gt = extractor.transform(gt)
        feats_rec = extractor.transform(recon)
        for field in feats_gt:
            scores = two_way_identification(feats_gt[field], feats_rec[field])
            key = f"two_way/{name}" + ("" if len(feats_gt) == 1 else f".{field}")
            metrics[key] = _summary(
                scores, chance=0.5, p=identification_pvalue(scores, len(scores)), **kw
            )
    for name, (true, pred) in (decoded_features or {}).items():
        scores = two_way_identification(true, pred)
        metrics[f"decoded_two_way/{name}"] = _summary(
            scores, chance=0.5, p=identification_pvalue(scores, len(scores)), **kw
        )
    return metrics
