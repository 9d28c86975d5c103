"""Masking of fMRI images with nilearn: a voxel mask, a label atlas or probabilistic maps.

:func:`mask_images` picks ``NiftiMasker`` (``mask=``), ``NiftiLabelsMasker``
(``labels_img=``) or ``NiftiMapsMasker`` (``maps_img=``, e.g. DiFuMo's probabilistic
components), checks first that the images and the mask share one voxel grid, leaves out
voxels holding NaN/inf, and cleans the extracted signals within each run
(:func:`nilearn.signal.clean` with ``runs=``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from ..utils.logging import logger, verbose_level
from ..utils.validation import BadInputError, check_option
from .fmri import (
    _check_filter_args,
    _clean_signals,
    _confounds_array,
    _standardize_option,
)

__all__ = ["mask_images"]

_TARGETS = ("data", "mask")


# ----------------------------------------------------------------------------- images
def _load_image(name: str, value, *, ndim: tuple[int, ...]):
    """A nibabel image from a path or an image (lazy for paths), of an allowed ndim."""
    import nibabel as nib

    if isinstance(value, (str, os.PathLike)):
        from ..utils.validation import check_path

        path = check_path(name, value, kind="file")
        try:
            img = nib.load(path)
        except Exception as err:  # nibabel raises several types for unreadable files
            raise BadInputError(f"{name}: cannot read {str(path)!r} as an image: {err}") from None
    elif isinstance(value, nib.spatialimages.SpatialImage):
        img = value
    else:
        raise BadInputError(
            f"{name} must be a NIfTI path or a nibabel image, got {type(value).__name__}."
        )
    if len(img.shape) not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise BadInputError(f"{name} must be a {want} image, got shape {img.shape}.")
    return img


def _load_runs(imgs, name: str = "imgs") -> list:
    """One 4-D image per run: a 4-D image/path, or a sequence of 4-D images (one per run).

    A sequence of 3-D images is one run (its volumes, in order), as nilearn reads it.
    """
    from nilearn.image import concat_imgs

    if isinstance(imgs, Sequence) and not isinstance(imgs, (str, bytes)):
        if len(imgs) == 0:
            raise BadInputError(f"{name} is an empty sequence; pass a 4-D image or one per run.")
        loaded = [_load_image(f"{name}[{i}]", im, ndim=(3, 4)) for i, im in enumerate(imgs)]
        dims = {len(im.shape) for im in loaded}
        if dims == {3}:
            _check_same_grid(list(zip(_names(loaded, name), loaded, strict=True)))
            return [concat_imgs(loaded)]
        if dims != {4}:
            raise BadInputError(
                f"{name} mixes 3-D and 4-D images; pass 4-D images (one per run) or 3-D images "
                "(the volumes of one run)."
            )
        return loaded
    img = _load_image(name, imgs, ndim=(3, 4))
    if len(img.shape) == 3:
        import nibabel as nib

        img = nib.Nifti1Image(np.asanyarray(img.dataobj)[..., None], img.affine, img.header)
    return [img]


def _names(imgs, prefix: str = "imgs") -> list[str]:
    return [f"{prefix}[{i}]" for i in range(len(imgs))] if len(imgs) > 1 else [prefix]


def _describe(img) -> str:
    affine = np.array2string(
        np.asarray(img.affine), precision=3, suppress_small=True, separator=", "
    ).replace("\n", "")
    return f"shape {tuple(img.shape[:3])}, affine {affine}"


def _same_grid(a, b) -> bool:
    return tuple(a.shape[:3]) == tuple(b.shape[:3]) and np.allclose(
        a.affine, b.affine, atol=1e-4, rtol=0
    )


def _check_same_grid(named: list[tuple[str, object]], *, hint: str = "") -> None:
    """Raise naming both grids when the images do not share shape and affine."""
    ref_name, ref = named[0]
    for name, img in named[1:]:
        if not _same_grid(ref, img):
            raise BadInputError(
                f"{ref_name} ({_describe(ref)}) and {name} ({_describe(img)}) are not on the "
                f"same voxel grid.{hint}"
            )


def _nonfinite_voxels(run_imgs) -> np.ndarray | None:
    """Voxels (3-D bool, data grid) non-finite in any volume of any run; None for int data."""
    bad = None
    for img in run_imgs:
        if np.dtype(img.get_data_dtype()).kind in "iub" and not _has_scaling(img):
            continue
        data = np.asanyarray(img.dataobj)
        run_bad = ~np.isfinite(data).all(axis=3)
        bad = run_bad if bad is None else bad | run_bad
    return bad


def _has_scaling(img) -> bool:
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    return not (slope == 1.0 and inter == 0.0)


def _jsonable(params: dict) -> dict:
    """Masker parameters with images and other objects replaced by a short description."""
    out = {}
    for key, value in params.items():
        if value is None or isinstance(value, (str, bool, int, float)):
            out[key] = value
        elif hasattr(value, "shape") and hasattr(value, "affine"):
            out[key] = f"<image {_describe(value)}>"
        elif isinstance(value, (tuple, list)) and all(
            isinstance(v, (str, bool, int, float)) for v in value
        ):
            out[key] = list(value)
        else:
            out[key] = type(value).__name__
    return out


# ----------------------------------------------------------------------------- masking
def mask_images(
    imgs,
    *,
    mask=None,
    labels_img=None,
    maps_img=None,
    runs=None,
    detrend: bool = False,
    high_pass: float | None = None,
    t_r: float | None = None,
    confounds=None,
    standardize: bool | str = False,
    smoothing_fwhm: float | None = None,
    resample: bool = False,
    resampling_target: str = "data",
    filter: str = "butterworth",
    strategy: str = "mean",
    verbose=None,
) -> tuple[np.ndarray, dict]:
    """Extract signals from fMRI images with a voxel mask, a label atlas or probabilistic maps.

    Give exactly one of ``mask`` (``NiftiMasker``: one column per voxel), ``labels_img``
    (``NiftiLabelsMasker``: one column per parcel, its ``strategy`` over the parcel's
    voxels) or ``maps_img`` (``NiftiMapsMasker``: one column per map, the least-squares
    weights of the maps at each volume, e.g. DiFuMo's probabilistic components).

    Checks and repairs, in order:

    - every run and the mask/atlas must share shape and affine; otherwise a
      :class:`BadInputError` names both grids, unless ``resample=True``, which resamples
      (a logged warning) onto ``resampling_target``;
    - voxels holding NaN or inf in any volume are left out of the mask (a logged warning;
      ``info['nan_voxels_dropped']`` and ``info['nan_voxel_ijk']`` record them). With
      ``smoothing_fwhm`` nilearn smooths them as 0 before they are dropped. Finding them
      loads each floating-point run once; integer data are skipped.

    Cleaning (detrending, high-pass, confound regression, standardising) runs after
    extraction, within each run, with :func:`nilearn.signal.clean` and ``runs=``.

    Parameters
    ----------
    imgs : str | PathLike | nibabel image | sequence of them
        One 4-D image (its runs given by ``runs``), or one 4-D image per run (processed one
        run at a time), or a sequence of 3-D volumes of one run.
    mask : str | PathLike | nibabel image | None
        Binary 3-D mask (nonzero = in).
    labels_img : str | PathLike | nibabel image | None
        3-D integer atlas; 0 is background.
    maps_img : str | PathLike | nibabel image | None
        4-D image of (probabilistic) maps, one map per volume.
    runs : array-like of shape (n_volumes,) | None
        Run of each volume when ``imgs`` is one 4-D image; None: one run (or one per
        image when ``imgs`` is a sequence of 4-D images, numbered 1, 2, ...).
    detrend : bool
        Remove a linear trend per run.
    high_pass : float | None
        High-pass cut-off in Hz; needs ``t_r``.
    t_r : float | None
        Repetition time in seconds.
    confounds : ndarray | DataFrame | str | PathLike | list | None
        (n_volumes, n_confounds) regressors for all volumes, or a list of one per run
        image; regressed out within each run.
    standardize : bool | 'zscore_sample' | 'zscore' | 'psc'
        Scaling per run; True means ``'zscore_sample'``.
    smoothing_fwhm : float | None
        Gaussian smoothing (mm) before extraction.
    resample : bool
        Resample when the grids differ instead of raising.
    resampling_target : 'data' | 'mask'
        With ``resample=True``: resample the mask/atlas onto the images' grid (nearest
        neighbour for a mask or labels) or the images onto the mask/atlas grid.
    filter : 'butterworth' | 'cosine'
        How ``high_pass`` is applied.
    strategy : str
        Summary of each parcel for ``labels_img`` (``'mean'``, ``'median'``, ...).
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    X : ndarray of float32, shape (n_volumes, n_features)
        Volumes of all runs in input order.
    info : dict
        ``masker`` (class name), ``masker_params`` (its parameters, images described),
        ``clean`` (the cleaning settings), ``runs``, ``n_volumes``, ``n_features``,
        ``resampled``, ``nan_voxels_dropped``, ``nan_voxel_ijk``; for a mask also
        ``voxel_ijk`` and ``affine`` of the kept voxels; for labels ``region_ids``
        (the label value of each column); for maps ``n_maps``.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _mask_images(
            imgs,
            mask=mask,
            labels_img=labels_img,
            maps_img=maps_img,
            runs=runs,
            detrend=detrend,
            high_pass=high_pass,
            t_r=t_r,
            confounds=confounds,
            standardize=standardize,
            smoothing_fwhm=smoothing_fwhm,
            resample=resample,
            resampling_target=resampling_target,
            filter=filter,
            strategy=strategy,
        )
    finally:
        logger.setLevel(old_level)


def _mask_images(
    imgs,
    *,
    mask,
    labels_img,
    maps_img,
    runs,
    detrend,
    high_pass,
    t_r,
    confounds,
    standardize,
    smoothing_fwhm,
    resample,
    resampling_target,
    filter,
    strategy,
):
    import nibabel as nib
    from nilearn.image import resample_to_img
    from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker, NiftiMasker

    given = {
        k: v
        for k, v in (("mask", mask), ("labels_img", labels_img), ("maps_img", maps_img))
        if v is not None
    }
    if len(given) != 1:
        raise BadInputError(
            "Give exactly one of mask, labels_img or maps_img, got "
            f"{sorted(given) if given else 'none'}."
        )
    kind, ref = next(iter(given.items()))
    ref = _load_image(kind, ref, ndim=(3, 4) if kind == "maps_img" else (3,))
    check_option("resampling_target", resampling_target, _TARGETS)
    high_pass, t_r = _check_filter_args(high_pass, t_r, filter)
    standardize = _standardize_option(standardize)
    if smoothing_fwhm is not None and (
        isinstance(smoothing_fwhm, bool)
        or not isinstance(smoothing_fwhm, (int, float, np.number))
        or smoothing_fwhm < 0
    ):
        raise BadInputError(
            f"smoothing_fwhm must be None or a non-negative width in mm, got {smoothing_fwhm!r}."
        )

    run_imgs = _load_runs(imgs)
    names = _names(run_imgs)
    _check_same_grid(
        list(zip(names, run_imgs, strict=True)), hint=" Every run must share one grid."
    )
    n_per_run = [img.shape[3] for img in run_imgs]
    n_volumes = int(sum(n_per_run))
    if len(run_imgs) > 1:
        if runs is not None:
            raise BadInputError(
                f"runs must be None when imgs is a sequence of {len(run_imgs)} run images "
                "(each image is one run)."
            )
        run_labels = np.repeat(np.arange(1, len(run_imgs) + 1), n_per_run)
    elif runs is None:
        run_labels = np.ones(n_volumes, dtype=np.int64)
    else:
        run_labels = np.asarray(runs).reshape(-1)
        if len(run_labels) != n_volumes:
            raise BadInputError(
                f"runs has {len(run_labels)} entries but imgs has {n_volumes} volumes; "
                "give one run label per volume."
            )
    conf = _stack_confounds(confounds, n_per_run)

    resampled = not _same_grid(run_imgs[0], ref)
    if resampled:
        hint = " Resample one onto the other (nilearn.image.resample_to_img) or pass resample=True."
        if not resample:
            _check_same_grid([("imgs", run_imgs[0]), (kind, ref)], hint=hint)
        onto = "the images' grid" if resampling_target == "data" else f"the {kind} grid"
        logger.warning(
            "Resampling: imgs (%s) and %s (%s) differ; resampling onto %s.",
            _describe(run_imgs[0]),
            kind,
            _describe(ref),
            onto,
        )

    bad = _nonfinite_voxels(run_imgs)
    data_grid = run_imgs[0]
    finite_img = None
    nan_ijk = np.zeros((0, 3), dtype=np.int64)
    if bad is not None and bad.any():
        finite_img = nib.Nifti1Image((~bad).astype(np.uint8), data_grid.affine)

    if kind == "mask":
        mask_data = np.asanyarray(ref.dataobj)
        values = np.unique(mask_data)
        if len(values) > 2 or not np.isfinite(values).all():
            raise BadInputError(
                f"mask must be binary (0 and one other value), got {len(values)} distinct "
                "values; threshold it (nilearn.image.binarize_img) or pass it as labels_img "
                "or maps_img."
            )
        mask_img = nib.Nifti1Image((mask_data != 0).astype(np.uint8), ref.affine)
        if resampled and resampling_target == "data":
            mask_img = resample_to_img(
                mask_img, data_grid, interpolation="nearest", copy_header=True, force_resample=True
            )
        if finite_img is not None and _same_grid(mask_img, data_grid):
            inside = np.asanyarray(mask_img.dataobj) != 0
            dropped = inside & bad
            nan_ijk = np.argwhere(dropped)
            mask_img = nib.Nifti1Image((inside & ~bad).astype(np.uint8), mask_img.affine)
        if not np.asanyarray(mask_img.dataobj).any():
            raise BadInputError("mask selects no voxel (after leaving out NaN voxels).")
        masker = NiftiMasker(mask_img=mask_img, smoothing_fwhm=smoothing_fwhm, standardize=None)
    else:
        if finite_img is not None:
            support = np.asanyarray(ref.dataobj)
            support = support != 0 if support.ndim == 3 else (support != 0).any(axis=3)
            if _same_grid(ref, data_grid):
                nan_ijk = np.argwhere(support & bad)
            else:
                nan_ijk = np.argwhere(bad)
        target = None
        if resampled:
            target = "data" if resampling_target == "data" else kind.replace("_img", "s")
        common = {
            "mask_img": finite_img,
            "smoothing_fwhm": smoothing_fwhm,
            "standardize": None,
            "resampling_target": target,
        }
        if kind == "labels_img":
            masker = NiftiLabelsMasker(labels_img=ref, strategy=strategy, **common)
        else:
            masker = NiftiMapsMasker(maps_img=ref, **common)
    if len(nan_ijk):
        logger.warning(
            "%d voxel(s) of the %s hold NaN/inf in some volume; left out (first: %s).",
            len(nan_ijk),
            kind,
            nan_ijk[0].tolist(),
        )

    if kind == "mask":
        masker.fit()  # the mask is given: nothing to compute from the images
    else:
        masker.fit(run_imgs[0])
    with warnings.catch_warnings():
        if len(nan_ijk):  # nilearn's note on the NaN voxels that we have left out already
            warnings.filterwarnings("ignore", message="Non-finite values detected")
        if resampled:  # asked for and logged above
            warnings.filterwarnings("ignore", message="imgs are being resampled")
        parts = [np.asarray(masker.transform(img), dtype=np.float64) for img in run_imgs]
    X = np.concatenate(parts, axis=0)
    info: dict = {
        "masker": type(masker).__name__,
        "masker_params": _jsonable(masker.get_params()),
        "runs": np.unique(run_labels).tolist(),
        "n_volumes": n_volumes,
        "resampled": bool(resampled),
        "resampling_target": resampling_target if resampled else None,
        "nan_voxels_dropped": int(len(nan_ijk)),
        "nan_voxel_ijk": nan_ijk,
    }
    dropped_cols = ~np.isfinite(X).all(axis=0)
    if dropped_cols.any():
        logger.warning(
            "%d column(s) of the extracted signals hold NaN/inf (after resampling); left out.",
            int(dropped_cols.sum()),
        )
    info["dropped_columns"] = np.flatnonzero(dropped_cols)
    if kind == "mask":
        final_mask = masker.mask_img_
        info["voxel_ijk"] = np.argwhere(np.asanyarray(final_mask.dataobj) != 0)[~dropped_cols]
        info["affine"] = np.asarray(final_mask.affine)
    elif kind == "labels_img":
        ids = [v for k, v in masker.region_ids_.items() if k != "background"]
        info["region_ids"] = [ids[i] for i in np.flatnonzero(~dropped_cols)]
    else:
        info["n_maps"] = int(X.shape[1])
    X = X[:, ~dropped_cols]
    X = _clean_signals(
        X,
        run_labels,
        detrend=detrend,
        high_pass=high_pass,
        t_r=t_r,
        confounds=conf,
        standardize=standardize,
        filter=filter,
    )
    info["n_features"] = int(X.shape[1])
    info["clean"] = {
        "detrend": bool(detrend),
        "high_pass": high_pass,
        "t_r": t_r,
        "filter": filter,
        "n_confounds": 0 if conf is None else int(conf.shape[1]),
        "standardize": standardize,
        "smoothing_fwhm": smoothing_fwhm,
    }
    logger.info(
        "Masked %d volume(s) in %d run(s) with %s: %d feature(s).",
        n_volumes,
        len(info["runs"]),
        info["masker"],
        info["n_features"],
    )
    return X.astype(np.float32), info


def _stack_confounds(confounds, n_per_run: list[int]) -> np.ndarray | None:
    if confounds is None:
        return None
    if isinstance(confounds, (list, tuple)):
        if len(confounds) != len(n_per_run):
            raise BadInputError(
                f"confounds is a list of {len(confounds)} but imgs has {len(n_per_run)} "
                "run(s); give one confounds table per run (or one for all volumes)."
            )
        parts = [
            _confounds_array(f"confounds[{i}]", c, n)
            for i, (c, n) in enumerate(zip(confounds, n_per_run, strict=True))
        ]
        widths = {p.shape[1] for p in parts}
        if len(widths) != 1:
            raise BadInputError(
                f"confounds of the runs have different numbers of columns {sorted(widths)}; "
                "give every run the same regressors."
            )
        return np.concatenate(parts, axis=0)
    return _confounds_array("confounds", confounds, int(sum(n_per_run)))
