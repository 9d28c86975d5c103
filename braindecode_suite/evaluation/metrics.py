"""Image-reconstruction metrics as the NSD reconstruction papers compute them.

Low-level metrics (PixCorr, SSIM) follow the evaluation notebooks of brain-diffuser and
MindEye1/2: both images are resized to 425 x 425, PixCorr is the Pearson r of the flattened
RGB pair, SSIM is scikit-image's ``structural_similarity`` on ``rgb2gray`` images with
Gaussian weights. High-level metrics take features computed elsewhere (AlexNet, Inception,
CLIP, EfficientNet, SwAV) and score them with two-way identification or correlation
distance. See ``EVALUATION_PROTOCOLS.md`` for which paper did what.

Images are arrays of shape ``(n_images, height, width, 3)``, either ``uint8`` in 0..255 or
float in [0, 1].

Resizing
--------
MindEye's notebooks resize float tensors with
``torchvision.transforms.Resize(425, interpolation=InterpolationMode.BILINEAR)``. On a tensor
that is ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
antialias=antialias)``, and since torchvision 0.17 ``antialias`` defaults to True.
:func:`resize_images` calls ``interpolate`` with those settings directly (the test suite checks
it against ``torchvision.transforms.functional.resize``). Antialiasing only changes
*downsampling*; MindEye's usual path (256 px up to 425 px) is an upsampling, where older
torchvision versions (antialias off for tensors) give the same result.

Unlike ``Resize(425)`` (which scales the shorter edge and keeps the aspect ratio), images are
resized to exactly ``size x size``; NSD stimuli are square, so the two agree there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..utils.logging import logger
from ..utils.validation import (
    BadInputError,
    check_array,
    check_option,
    check_positive_int,
    check_type,
)

__all__ = [
    "resize_images",
    "compute_pixcorr",
    "compute_ssim",
    "two_way_identification",
    "identification_pvalue",
    "correlation_distance",
    "bootstrap_ci",
    "mismatched_baseline",
    "compute_ssim_columns",
    "correlation_matrix",
    "two_way_from_correlation",
]

#: Images resized per call to ``interpolate``, to bound memory on large test sets.
_RESIZE_CHUNK = 64


def _as_float_images(name: str, images) -> np.ndarray:
    """Validate an image batch; return it as float32 in [0, 1], shape (n, H, W, 3)."""
    arr = check_array(name, images)
    if arr.ndim != 4:
        raise BadInputError(
            f"{name} must be a 4-D array of shape (n_images, height, width, 3), got shape "
            f"{arr.shape} ({arr.ndim}-D) instead. Add a leading axis for a single image."
        )
    if arr.shape[-1] != 3:
        raise BadInputError(
            f"{name} must have 3 colour channels on the last axis (n_images, height, width, 3), "
            f"got {arr.shape[-1]} channel(s) (shape {arr.shape}) instead. Convert grey images "
            f"to RGB first, e.g. np.repeat(x, 3, axis=-1); channels-first arrays need "
            f"x.transpose(0, 2, 3, 1)."
        )
    if arr.shape[0] == 0:
        raise BadInputError(f"{name} contains no images (shape {arr.shape}).")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype.kind != "f":
        raise BadInputError(
            f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {arr.dtype} instead."
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise BadInputError(
            f"{name} is a float array with values in [{lo:.4g}, {hi:.4g}], but float images "
            f"must lie in [0, 1]. Divide 0..255 images by 255 (or pass them as uint8) and clip "
            f"model outputs to [0, 1]."
        )
    return arr.astype(np.float32, copy=False)


def _check_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_float_images("pred", pred)
    gt = _as_float_images("gt", gt)
    if len(pred) != len(gt):
        raise BadInputError(
            f"pred and gt must hold the same number of images, got {len(pred)} predictions "
            f"and {len(gt)} ground-truth images."
        )
    return pred, gt


def resize_images(images, size: int) -> np.ndarray:
    """Resize images bilinearly (with antialiasing) to ``size x size``.

    Parameters
    ----------
    images : ndarray of shape (n_images, height, width, 3)
        ``uint8`` in 0..255 or float in [0, 1].
    size : int
        Output height and width in pixels.

    Returns
    -------
    resized : ndarray of shape (n_images, size, size, 3), float32 in [0, 1]
        ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
        antialias=True)``, i.e. what ``torchvision.transforms.Resize`` does to a float tensor.
    """
    size = check_positive_int("size", size)
    arr = _as_float_images("images", images)
    if arr.shape[1:3] == (size, size):
        return arr.copy()
    import torch
    import torch.nn.functional as F

    out = np.empty((len(arr), size, size, 3), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(arr), _RESIZE_CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(arr[start : start + _RESIZE_CHUNK]))
            chunk = chunk.permute(0, 3, 1, 2)
            resized = F.interpolate(
                chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
            out[start : start + len(chunk)] = resized.clamp_(0.0, 1.0).permute(0, 2, 3, 1).numpy()
    return out


def _flatten_rows(name: str, features) -> np.ndarray:
    arr = check_array(name, features)
    if arr.ndim < 2:
        raise BadInputError(
            f"{name} must have shape (n_items, n_features, ...), got shape {arr.shape} instead."
        )
    if arr.dtype.kind not in "biuf":
        raise BadInputError(f"{name} must be numeric, got dtype {arr.dtype} instead.")
    return arr.reshape(len(arr), -1).astype(np.float64)


def _zscore_rows(name: str, x: np.ndarray) -> np.ndarray:
    """Centre rows and scale them to unit norm, so that ``a @ b.T`` is Pearson's r."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    bad = np.flatnonzero(norm[:, 0] <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))))
    if bad.size:
        raise BadInputError(
            f"{name} has {bad.size} constant row(s) (e.g. item {int(bad[0])}); a correlation "
            f"with a constant vector is undefined. Remove or fix those items."
        )
    return x / norm


def _check_feature_pair(gt_features, pred_features) -> tuple[np.ndarray, np.ndarray]:
    gt = _flatten_rows("gt_features", gt_features)
    pred = _flatten_rows("pred_features", pred_features)
    if gt.shape != pred.shape:
        raise BadInputError(
            f"gt_features and pred_features must have the same shape after flattening each "
            f"item, got {gt.shape} and {pred.shape}."
        )
    return gt, pred


def compute_pixcorr(pred, gt, *, size: int = 425) -> np.ndarray:
    """Pixel correlation: Pearson r between the flattened RGB images of each pair.

    Parameters
    ----------
    pred, gt : ndarray of shape (n_images, height, width, 3)
        Reconstructions and the stimuli they reconstruct, in the same order. The two may have
        different sizes: both are resized to ``size x size`` (see :func:`resize_images`).
    size : int
        Common size; 425 as in brain-diffuser and MindEye.

    Returns
    -------
    r : ndarray of shape (n_images,)
        One correlation per pair (NaN, with a logged warning, where an image is constant).
        Average it for the published PixCorr.
    """
    pred, gt = _check_pair(pred, gt)
    a = resize_images(pred, size).reshape(len(pred), -1)
    b = resize_images(gt, size).reshape(len(gt), -1)
    r = pearson_rows(a, b)
    if np.isnan(r).any():
        logger.warning("PixCorr is NaN for %d pair(s) with a constant image.", np.isnan(r).sum())
    return r


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between row ``i`` of ``a`` and row ``i`` of ``b`` (items flattened), float64.

    Row by row in torch, so that no (n, 3 * size**2) float64 temporaries are made: the PixCorr
    of both :func:`compute_pixcorr` and the protocols. ``nan`` where a row is constant.
    """
    import torch

    a = torch.from_numpy(np.ascontiguousarray(a).reshape(len(a), -1))
    b = torch.from_numpy(np.ascontiguousarray(b).reshape(len(b), -1))
    r = np.empty(len(a))
    with torch.inference_mode():
        for i in range(len(a)):
            x = a[i].double()
            y = b[i].double()
            x -= x.mean()
            y -= y.mean()
            den = float(torch.sqrt(torch.dot(x, x) * torch.dot(y, y)))
            r[i] = float(torch.dot(x, y)) / den if den > 0 else np.nan
    return r


def compute_ssim(pred, gt, *, size: int = 425) -> np.ndarray:
    """Structural similarity of each pair on grey images, as brain-diffuser and MindEye.

    Both images are resized to ``size x size``, converted with ``skimage.color.rgb2gray`` and
    compared with ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)``. Old scikit-image releases were called with
    ``multichannel=True`` on these 2-D images; current scikit-image has no such argument, and
    the 2-D grey image is scored directly.

    Parameters
    ----------
    pred, gt : ndarray of shape (n_images, height, width, 3)
        Reconstructions and stimuli, in the same order.
    size : int
        Common size; 425 as in brain-diffuser and MindEye.

    Returns
    -------
    ssim : ndarray of shape (n_images,)
    """
    return _grey_ssim(pred, gt, size, per_column=False)


def _grey_ssim(pred, gt, size: int, *, per_column: bool, device=None) -> np.ndarray:
    """SSIM of each resized grey pair; ``per_column`` scores each pixel column apart."""
    from skimage.color import rgb2gray

    pred, gt = _check_pair(pred, gt)
    return ssim_gaussian_batch(
        rgb2gray(resize_images(pred, size)),
        rgb2gray(resize_images(gt, size)),
        per_column=per_column,
        device=device,
    )


#: scikit-image's Gaussian SSIM window: sigma 1.5 truncated at 3.5 sigma (11 taps).
_SSIM_SIGMA, _SSIM_TRUNCATE = 1.5, 3.5


def _gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter`` (radius ``int(truncate*sigma+0.5)``)."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_axis(t, taps, dim: int):
    """Gaussian-filter a (n, H, W) tensor along ``dim`` with scipy's 'reflect' boundary."""
    import torch

    r = (len(taps) - 1) // 2
    n_along = t.shape[dim]
    # 'reflect' in scipy.ndimage = (d c b a | a b c d | d c b a): the edge sample repeats
    idx = np.concatenate([np.arange(r)[::-1], np.arange(n_along), n_along - 1 - np.arange(r)])
    if (idx < 0).any() or (idx >= n_along).any():  # tiny images: fold indices repeatedly
        period = 2 * n_along
        idx = np.arange(-r, n_along + r) % period
        idx = np.where(idx >= n_along, period - 1 - idx, idx)
    padded = t.index_select(dim, torch.from_numpy(idx).to(t.device))
    # a sum of shifted slices: faster than conv1d for 11 float64 taps on CPU
    out = padded.narrow(dim, 0, n_along) * float(taps[0])
    for k in range(1, len(taps)):
        out.add_(padded.narrow(dim, k, n_along), alpha=float(taps[k]))
    return out


def ssim_gaussian_batch(
    pred_gray,
    gt_gray,
    *,
    per_column: bool = False,
    data_range: float = 1.0,
    chunk: int = 8,
    device: str | None = None,
) -> np.ndarray:
    """Batched SSIM, equal to scikit-image's Gaussian-window SSIM of each pair.

    Each value is what ``skimage.metrics.structural_similarity(p, g, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)`` returns for the 2-D grey
    images ``p, g`` (``per_column=True``: with ``channel_axis=-1``, i.e. each pixel column
    scored as a 1-D signal and the column scores averaged, which is what scikit-image 0.17
    did with ``multichannel=True`` on grey images in brain-diffuser's code).

    ``device=None`` calls scikit-image pair by pair (on a CPU nothing we tried beat it:
    ``scipy.ndimage`` on stacked pairs and torch were not faster, see benchmarks/evaluation.py).
    A torch device runs the five Gaussian filterings of a chunk of pairs as separable torch
    filters in float64, with scikit-image's kernel, boundary ('reflect'), constants and edge
    crop: written for GPUs, where the per-pair CPU call would dominate the evaluation.

    Parameters
    ----------
    pred_gray, gt_gray : ndarray of shape (n_images, H, W)
        Grey images (floats, e.g. ``skimage.color.rgb2gray`` output), paired by index.
    per_column : bool
    data_range : float
    chunk : int
        Pairs per filtering call (bounds memory: ~40 MB per pair at 425 px).
    device : str | None
        ``None``: scikit-image; else a torch device (``'cuda'``; ``'cpu'`` works too).

    Returns
    -------
    ssim : ndarray of shape (n_images,), float64
    """
    a = np.asarray(pred_gray)
    b = np.asarray(gt_gray)
    if a.ndim != 3 or a.shape != b.shape:
        raise BadInputError(
            f"pred_gray and gt_gray must be grey image stacks of one shape (n_images, H, W), "
            f"got {a.shape} and {b.shape}."
        )
    taps_np = _gaussian_taps(_SSIM_SIGMA, _SSIM_TRUNCATE)
    win = len(taps_np)
    if a.shape[1] < win or (not per_column and a.shape[2] < win):
        raise BadInputError(f"images of shape {a.shape[1:]} are smaller than the {win}-px window.")
    if device is None:
        from skimage.metrics import structural_similarity

        extra = {"channel_axis": -1} if per_column else {}
        return np.array(
            [
                structural_similarity(
                    p,
                    g,
                    **extra,
                    gaussian_weights=True,
                    sigma=_SSIM_SIGMA,
                    use_sample_covariance=False,
                    data_range=data_range,
                )
                for p, g in zip(a, b, strict=True)
            ],
            dtype=np.float64,
        )
    import torch

    pad = (win - 1) // 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    taps = torch.from_numpy(taps_np).to(device)
    out = np.empty(len(a), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(a), chunk):
            x = torch.from_numpy(np.asarray(a[start : start + chunk], dtype=np.float64)).to(device)
            y = torch.from_numpy(np.asarray(b[start : start + chunk], dtype=np.float64)).to(device)
            maps = torch.cat([x, y, x * x, y * y, x * y])
            for d in (1,) if per_column else (1, 2):
                maps = _filter_axis(maps, taps, d)
            ux, uy, uxx, uyy, uxy = maps.chunk(5)
            vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
            s_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
                (ux * ux + uy * uy + c1) * (vx + vy + c2)
            )
            s_map = s_map[:, pad:-pad] if per_column else s_map[:, pad:-pad, pad:-pad]
            out[start : start + len(x)] = s_map.reshape(len(x), -1).mean(1).cpu().numpy()
    return out


def two_way_identification(gt_features, pred_features) -> np.ndarray:
    """Two-way identification accuracy of each reconstruction (brain-diffuser / MindEye).

    With ``R[i, j]`` the Pearson correlation between ground-truth features ``i`` and predicted
    features ``j``, reconstruction ``j`` scores the fraction of ground-truth items ``i != j``
    with ``R[i, j] < R[j, j]`` (ties count as failures), i.e. a count divided by ``n - 1``.
    Chance is 0.5; the published number is the mean over items.

    Parameters
    ----------
    gt_features, pred_features : ndarray of shape (n_items, ...)
        Features of the stimuli and of their reconstructions, same order; each item is
        flattened. ``n_items >= 2``. Duplicated ground-truth items lower the score: remove them.

    Returns
    -------
    scores : ndarray of shape (n_items,)
        Values in [0, 1].
    """
    gt, pred = _check_feature_pair(gt_features, pred_features)
    n = len(gt)
    if n < 2:
        raise BadInputError(
            f"two-way identification needs at least 2 items, got {n}. Score a test set with "
            f"several stimuli."
        )
    r = _zscore_rows("gt_features", gt) @ _zscore_rows("pred_features", pred).T
    congruent = np.diag(r)
    success = r < congruent[np.newaxis, :]
    return success.sum(axis=0) / (n - 1)


def identification_pvalue(scores, n_items: int) -> float:
    """One-sided binomial p-value that two-way identification beats chance (0.5).

    The mean accuracy is turned into a count of successes among the
    ``n_items * (n_items - 1)`` pairwise comparisons and tested with
    ``scipy.stats.binomtest(..., p=0.5, alternative="greater")``. The comparisons share
    items and are not independent, so this p-value is optimistic (too small); it is reported
    as in the literature, beside a bootstrap interval and a mismatched-pair baseline.

    Parameters
    ----------
    scores : float or ndarray of shape (n_items,)
        Per-item scores from :func:`two_way_identification`, or their mean.
    n_items : int
        Number of items that were identified (>= 2).

    Returns
    -------
    pvalue : float
    """
    from scipy.stats import binomtest

    n_items = check_positive_int("n_items", n_items, minimum=2)
    scores = check_array("scores", scores)
    if scores.ndim > 1 or scores.size == 0:
        raise BadInputError(
            f"scores must be a number or a 1-D array of per-item scores, got shape "
            f"{scores.shape} instead."
        )
    if scores.ndim == 1 and scores.size != n_items:
        raise BadInputError(
            f"scores holds {scores.size} per-item values but n_items={n_items}; pass the "
            f"scores of all n_items items (or their mean)."
        )
    mean = float(np.mean(scores))
    if not 0.0 <= mean <= 1.0:
        raise BadInputError(f"scores must lie in [0, 1], got a mean of {mean:.4g}.")
    n_comparisons = n_items * (n_items - 1)
    k = int(round(mean * n_comparisons))
    return float(binomtest(k, n_comparisons, p=0.5, alternative="greater").pvalue)


def correlation_distance(gt_features, pred_features) -> np.ndarray:
    """``1 - Pearson r`` between each item's ground-truth and predicted features.

    The EfficientNet-B1 and SwAV metrics of brain-diffuser and MindEye (lower is better;
    0 is identical up to an affine map, 1 is uncorrelated, 2 is anticorrelated).

    Parameters
    ----------
    gt_features, pred_features : ndarray of shape (n_items, ...)

    Returns
    -------
    distance : ndarray of shape (n_items,)
    """
    gt, pred = _check_feature_pair(gt_features, pred_features)
    r = np.sum(_zscore_rows("gt_features", gt) * _zscore_rows("pred_features", pred), axis=1)
    return 1.0 - r


def bootstrap_ci(
    values, *, n_boot: int = 1000, ci: float = 0.95, random_state: int | None = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    Parameters
    ----------
    values : ndarray of shape (n_values,)
        Per-item metric values (NaNs are an error: drop them first).
    n_boot : int
        Number of bootstrap resamples.
    ci : float
        Coverage, in (0, 1).
    random_state : int | None
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    low, high : float
    """
    values = check_array("values", values, ndim=1)
    if values.size == 0:
        raise BadInputError("values is empty; a confidence interval needs at least one value.")
    n_boot = check_positive_int("n_boot", n_boot)
    check_type("ci", ci, (float, int))
    if not 0.0 < ci < 1.0:
        raise BadInputError(f"ci must lie strictly between 0 and 1 (e.g. 0.95), got {ci!r}.")
    values = values.astype(np.float64)
    rng = np.random.default_rng(random_state)
    means = np.empty(n_boot)
    block = max(1, 2**22 // values.size)  # bound the index array to ~32 MB
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of ``range(n)`` with no fixed point (rejection)."""
    for _ in range(10_000):  # each try succeeds with probability ~1/e
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm
    raise RuntimeError("could not draw a derangement")  # pragma: no cover


def mismatched_baseline(
    metric_fn: Callable[..., np.ndarray], pred, gt, *, random_state: int | None = 0, **kw
) -> np.ndarray:
    """A metric's chance level: ``metric_fn`` on ``pred`` against a shuffled ``gt``.

    ``gt`` is permuted so that no reconstruction is paired with its own stimulus (a
    derangement), which keeps the image statistics and removes the correspondence.

    Parameters
    ----------
    metric_fn : callable
        ``metric_fn(pred, gt, **kw)``, e.g. :func:`compute_pixcorr` or :func:`compute_ssim`.
    pred, gt : ndarray of shape (n_items, ...)
        At least 2 items each, same count.
    random_state : int | None
        Seed of the permutation.
    **kw
        Passed to ``metric_fn``.

    Returns
    -------
    values : ndarray
        What ``metric_fn`` returns on the mismatched pairs.
    """
    if not callable(metric_fn):
        raise TypeError(f"metric_fn must be callable, got {type(metric_fn).__name__} instead.")
    n_pred, n_gt = len(pred), len(gt)
    if n_pred != n_gt:
        raise BadInputError(
            f"pred and gt must hold the same number of items, got {n_pred} and {n_gt}."
        )
    if n_gt < 2:
        raise BadInputError(f"a mismatched baseline needs at least 2 items, got {n_gt}.")
    perm = _derangement(n_gt, np.random.default_rng(random_state))
    return metric_fn(pred, np.asarray(gt)[perm], **kw)


# --------------------------------------------------------------------------------------------
# Added for the paper protocols (``protocols.py``): the variants the papers' code computes.


def compute_ssim_columns(pred, gt, *, size: int = 425) -> np.ndarray:
    """SSIM as brain-diffuser's pinned scikit-image (0.17.2) computed it: per pixel column.

    brain-diffuser calls ``structural_similarity(gen_gray, gt_gray, multichannel=True,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)`` on 2-D grey
    images. scikit-image <= 0.19 then treats the *last* axis as channels: each pixel column
    (a 1-D signal of ``size`` values) gets its own 1-D SSIM (11-tap Gaussian window), and the
    image's score is their mean. scikit-image >= 0.20 dropped ``multichannel`` and silently
    ignores it, so MindEye1/2 (scikit-image 0.20 / 0.22) scored the 2-D image, as
    :func:`compute_ssim` does. Here the per-column variant is ``structural_similarity(...,
    channel_axis=-1)`` on the grey images, which runs the same per-column computation.

    Parameters
    ----------
    pred, gt : ndarray of shape (n_images, height, width, 3)
        Reconstructions and stimuli, in the same order.
    size : int
        Common size (both are resized to ``size x size`` as in :func:`resize_images`).

    Returns
    -------
    ssim : ndarray of shape (n_images,)
    """
    return _grey_ssim(pred, gt, size, per_column=True)


#: Feature columns converted to float64 at a time in :func:`correlation_matrix` (memory bound).
_CORR_CHUNK = 8192


def _row_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row means and centred norms in float64, reading ``x`` in column chunks."""
    n, d = x.shape
    total = np.zeros(n)
    for start in range(0, d, _CORR_CHUNK):
        total += x[:, start : start + _CORR_CHUNK].sum(axis=1, dtype=np.float64)
    mean = total / d
    sq = np.zeros(n)
    for start in range(0, d, _CORR_CHUNK):
        block = x[:, start : start + _CORR_CHUNK].astype(np.float64) - mean[:, None]
        sq += np.einsum("ij,ij->i", block, block)
    return mean, np.sqrt(sq)


def correlation_matrix(gt_features, pred_features) -> np.ndarray:
    """Pearson correlations between every ground-truth item and every predicted item.

    ``R[i, j] = corr(gt_features[i], pred_features[j])``, i.e. the off-diagonal block of
    ``np.corrcoef(gt, pred)`` that brain-diffuser and MindEye take, computed in float64 while
    reading the features in column chunks, so that AlexNet-sized features (~185,000 values per
    image for 1,000 images) need no float64 copy of the whole matrix.

    Parameters
    ----------
    gt_features, pred_features : ndarray of shape (n_items, ...)
        Same number of items and the same size per item; each item is flattened.

    Returns
    -------
    r : ndarray of shape (n_items, n_items)
        NaN in the rows/columns of constant items (as ``np.corrcoef``), with a logged warning.
    """
    gt = check_array("gt_features", gt_features)
    pred = check_array("pred_features", pred_features)
    for name, arr in (("gt_features", gt), ("pred_features", pred)):
        if arr.ndim < 2:
            raise BadInputError(
                f"{name} must have shape (n_items, n_features, ...), got shape {arr.shape}."
            )
        if arr.dtype.kind not in "biuf":
            raise BadInputError(f"{name} must be numeric, got dtype {arr.dtype} instead.")
    gt = gt.reshape(len(gt), -1)
    pred = pred.reshape(len(pred), -1)
    if gt.shape != pred.shape:
        raise BadInputError(
            f"gt_features and pred_features must have the same shape after flattening each "
            f"item, got {gt.shape} and {pred.shape}."
        )
    gt_mean, gt_norm = _row_moments(gt)
    pred_mean, pred_norm = _row_moments(pred)
    r = np.zeros((len(gt), len(pred)))
    for start in range(0, gt.shape[1], _CORR_CHUNK):
        a = gt[:, start : start + _CORR_CHUNK].astype(np.float64) - gt_mean[:, None]
        b = pred[:, start : start + _CORR_CHUNK].astype(np.float64) - pred_mean[:, None]
        r += a @ b.T
    with np.errstate(divide="ignore", invalid="ignore"):
        gt_norm = np.where(gt_norm > 0, gt_norm, np.nan)
        pred_norm = np.where(pred_norm > 0, pred_norm, np.nan)
        r = r / gt_norm[:, None] / pred_norm[None, :]
    n_const = int(np.isnan(gt_norm).sum() + np.isnan(pred_norm).sum())
    if n_const:
        logger.warning(
            "%d constant feature row(s): their correlations are NaN and count as failures.",
            n_const,
        )
    return np.clip(r, -1.0, 1.0)


def two_way_from_correlation(r, *, variant: str = "mindeye") -> np.ndarray:
    """Two-way identification scores from a correlation matrix ``R[gt_i, pred_j]``.

    Parameters
    ----------
    r : ndarray of shape (n_items, n_items)
        ``R[i, j]``: correlation between ground truth ``i`` and reconstruction ``j`` (e.g.
        :func:`correlation_matrix`, or its mean over several samples per image).
    variant : 'mindeye' | 'takagi'
        - ``'mindeye'`` (brain-diffuser, MindEye1/2): fix reconstruction ``j``; its score is
          the fraction of ground truths ``i != j`` with ``R[i, j] < R[j, j]``.
        - ``'takagi'`` (Takagi & Nishimoto): fix ground truth ``i``; its score is the fraction
          of reconstructions ``j != i`` with ``R[i, j] < R[i, i]``.

        Ties and NaN count as failures in both (strict ``<``, as the papers' code).

    Returns
    -------
    scores : ndarray of shape (n_items,)
        In [0, 1], chance 0.5; index ``j`` is the reconstruction (``'mindeye'``) or the
        ground truth (``'takagi'``).
    """
    variant = check_option("variant", variant, ("mindeye", "takagi"))
    r = check_array("r", r, ndim=2, finite=False)
    n = r.shape[0]
    if r.shape != (n, n):
        raise BadInputError(f"r must be a square (n_items, n_items) matrix, got shape {r.shape}.")
    if n < 2:
        raise BadInputError(f"two-way identification needs at least 2 items, got {n}.")
    r = r.astype(np.float64)
    congruent = np.diag(r)
    if variant == "mindeye":
        success = r < congruent[np.newaxis, :]  # column j against its own diagonal
        return success.sum(axis=0) / (n - 1)
    success = r < congruent[:, np.newaxis]  # row i against its own diagonal
    return success.sum(axis=1) / (n - 1)
