"""A small NSD-layout dataset with simulated fMRI responses and a known forward model.

:func:`make_demo_nsd` writes the exact NSD file names and formats (see
``shared/DATASET_FORMATS.md`` §1), so :func:`~braindecode_suite.datasets.load_nsd`
reads it like real NSD. Everything is deterministic given ``random_state``.

Stimuli
    Random square crops (side 40–100 % of the photo's short side, any position,
    50 % horizontally flipped) of the photographs bundled with scikit-image,
    scikit-learn and matplotlib, resized to ``image_size`` (PIL LANCZOS). Each photo
    has one category (person, animal, vehicle, scene, object, plant, texture).
    Every stimulus is a distinct crop; test crops may come from the same photos.

Voxels
    Grid ``(22, 26, 20)`` at 1.8 mm (unequal dims on purpose). Brain = an ellipsoid;
    ``nsdgeneral`` = the ``n_voxels_prf + n_voxels_category`` most posterior brain
    voxels (lowest y). Of these, the ``n_voxels_prf`` most posterior are early-visual
    pRF voxels, the rest higher-visual category voxels. Other brain voxels hold only
    session offsets and noise; outside the brain betas are 0 (as in NSD).

pRF voxels
    Each has a 2-D Gaussian receptive field on a 64×64 copy of the image. Centres are
    retinotopic: the horizontal centre is the rank of the voxel's x coordinate, the
    vertical the rank of its z coordinate (plus jitter), so centres are uniform over
    the image and neighbouring voxels see neighbouring places. ``sigma = (0.02 + 0.10
    · ecc / ecc_max) · width`` (2–12 % of the width, growing with eccentricity). The
    voxel pools four feature maps under its RF: contrast energy (quadrature Gabor
    pair, wavelength 8 px, 4 orientations, √ of summed energy), luminance
    (grey − 0.5), R−G and B−(R+G)/2, each map scaled to unit s.d.; weights per
    voxel: contrast ~ U(0.5, 1.5), luminance ~ N(0, 1) (sign = ON or OFF), colour
    ~ N(0, 0.5²).

Category voxels
    ``signal = w · e(category) + v · e(photo)``, with fixed random unit vectors
    ``e(·)`` in R^8 and per-voxel ``w ~ N(0, I)``, ``v ~ N(0, 0.7² I)``.

Measurement
    ``beta = gain · zscore(signal) + offset[session] + noise``, ``signal`` z-scored
    across all stimuli per voxel, ``gain ~ U(1, 2)`` % signal change,
    ``offset ~ N(0, 0.5²)`` per voxel and session, ``noise ~ N(0, noise_sd²)``
    (default 1.5 %, single-trial repeat correlation gain²/(gain²+noise_sd²) ≈
    0.3–0.64). Stored as round(beta × 300) in int16, clipped to the int16 range.

Trials
    Each train image once, each test ("shared") image ``n_test_repeats`` times. If
    the count does not divide by ``n_sessions``, a few train images get a second
    showing to pad it (listed in ``demo_truth.json``). Trials are shuffled across
    sessions; every session holds the same number of trials.

Stimulus info and captions
    ``nsddata/experiments/nsd/nsd_stim_info_merged.csv`` has NSD's columns for
    subject 1 only (the other subjects' columns are omitted): ``cocoId`` = 9000000 +
    ``nsdId`` (a synthetic id, unique, not a real COCO image), ``cocoSplit`` =
    ``'demo'``, ``cropBox`` = (top, bottom, left, right) fractions of the source photo
    cut away by the crop (the flip is not recorded), ``loss`` = 0 (NSD's loss concerns
    COCO object annotations, which the demo has none of), ``flagged`` and
    ``BOLD5000`` False, ``shared1000`` True for test images, ``subject1`` True for
    shown images and ``subject1_rep{0,1,2}`` the 1-based global trial number of the
    first three showings (0 = fewer showings).
    ``nsddata_stimuli/stimuli/nsd/annotations/captions_demo.json`` is a COCO-format
    caption file: three hand-written captions per photograph, shared by every crop of
    that photograph (crop and flip are not described).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.validation import BadInputError, check_path, check_positive_int
from ._photos import PHOTO_CAPTIONS, PHOTO_CATEGORIES, load_photos

__all__ = ["make_demo_nsd", "demo_is_current", "DEMO_GRID", "DEMO_VERSION"]

DEMO_GRID = (22, 26, 20)
VOXEL_MM = 1.8
FEATURE_SIZE = 64
FEATURES = ("contrast_energy", "luminance", "red_green", "blue_yellow")
EMBED_DIM = 8
TRUTH_FILE = "demo_truth.json"
#: Version of the demo's file set, stored in ``demo_truth.json`` and part of the cache
#: key: a build of another version (none recorded = 1) is rebuilt. 2 added
#: ``nsd_stim_info_merged.csv`` and ``captions_demo.json``; 3 the ROI label volumes
#: ``roi/prf-visualrois.nii.gz`` and ``roi/streams.nii.gz``.
DEMO_VERSION = 3
#: Synthetic COCO ids of the demo stimuli: ``DEMO_COCO_ID_OFFSET + nsdId``.
DEMO_COCO_ID_OFFSET = 9_000_000
DEMO_COCO_SPLIT = "demo"


def _built_version(truth_path: Path) -> int | None:
    """``demo_version`` of a finished build (1 if unrecorded), None if unreadable."""
    try:
        truth = json.loads(truth_path.read_text())
    except (OSError, ValueError):
        return None
    return int(truth.get("demo_version", 1)) if isinstance(truth, dict) else None


def demo_is_current(root) -> bool:
    """Whether ``root`` holds a finished demo build of the current :data:`DEMO_VERSION`.

    A pipeline that caches the demo (e.g. a stage skipped because its config did not
    change) should rebuild when this is False: older builds lack files.
    """
    truth_path = Path(root) / TRUTH_FILE
    return truth_path.is_file() and _built_version(truth_path) == DEMO_VERSION


def _crop_stimuli(rng, photos, n, image_size):
    from PIL import Image

    names = list(photos)
    imgs = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    meta = []
    for i in range(n):
        name = names[rng.integers(len(names))]
        photo = photos[name]
        h, w = photo.shape[:2]
        side = int(round(rng.uniform(0.4, 1.0) * min(h, w)))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        crop = crop.resize((image_size, image_size), Image.LANCZOS)
        arr = np.asarray(crop)
        imgs[i] = arr[:, ::-1] if flip else arr
        meta.append(
            {
                "source": name,
                "category": PHOTO_CATEGORIES[name],
                "crop_box": [left, top, left + side, top + side],  # PIL (x0, y0, x1, y1)
                "flip": flip,
            }
        )
    return imgs, meta


def _feature_maps(imgs) -> np.ndarray:
    """(n, 4, 64*64) maps: contrast energy, luminance, R−G, B−Y (unit s.d. each)."""
    from PIL import Image

    n = len(imgs)
    small = (
        np.stack(
            [
                np.asarray(Image.fromarray(im).resize((FEATURE_SIZE, FEATURE_SIZE), Image.BILINEAR))
                for im in imgs
            ]
        ).astype(np.float64)
        / 255.0
    )
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    # Quadrature Gabor pair = one complex Gabor; circular convolution through the FFT.
    yy, xx = np.mgrid[:FEATURE_SIZE, :FEATURE_SIZE] - FEATURE_SIZE // 2
    wavelength, sigma = 8.0, 4.0
    energy = np.zeros_like(grey)
    grey_f = np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True))
    for theta in np.arange(4) * np.pi / 4:
        u = xx * np.cos(theta) + yy * np.sin(theta)
        kernel = np.exp(-(xx**2 + yy**2) / (2 * sigma**2)) * np.exp(2j * np.pi * u / wavelength)
        kernel -= kernel.mean()
        kernel_f = np.fft.fft2(np.fft.ifftshift(kernel))
        energy += np.abs(np.fft.ifft2(grey_f * kernel_f)) ** 2
    maps = np.stack([np.sqrt(energy), grey - 0.5, r - g, b - (r + g) / 2], axis=1)
    maps = maps.reshape(n, len(FEATURES), -1)
    scale = maps.std(axis=(0, 2), keepdims=True)
    return maps / np.maximum(scale, 1e-12)


def _zscore(a, axis=0):
    sd = a.std(axis=axis, keepdims=True)
    return (a - a.mean(axis=axis, keepdims=True)) / np.maximum(sd, 1e-12)


def _ranks(v, rng):
    jittered = v + rng.uniform(-0.5, 0.5, size=len(v))
    return (np.argsort(np.argsort(jittered)) + 0.5) / len(v)


def _layout_voxels(rng, n_prf, n_cat):
    grid = np.array(DEMO_GRID)
    ijk = np.argwhere(np.ones(DEMO_GRID, dtype=bool))
    centre, radii = (grid - 1) / 2, 0.45 * grid
    brain = (((ijk - centre) / radii) ** 2).sum(axis=1) <= 1
    brain_ijk = ijk[brain]
    n_roi = n_prf + n_cat
    if n_roi > 0.8 * len(brain_ijk):
        raise BadInputError(
            f"n_voxels_prf + n_voxels_category = {n_roi} does not fit the demo brain "
            f"({len(brain_ijk)} voxels on grid {DEMO_GRID}); use at most "
            f"{int(0.8 * len(brain_ijk))} in total."
        )
    # Most posterior first (low y), ties broken by distance to the midline-centre.
    dist = np.abs(brain_ijk[:, 0] - centre[0]) + np.abs(brain_ijk[:, 2] - centre[2])
    order = np.lexsort((dist, brain_ijk[:, 1]))
    roi_ijk = brain_ijk[order[:n_roi]]
    return brain_ijk, roi_ijk[:n_prf], roi_ijk[n_prf:]


def _prf_signal(rng, prf_ijk, maps):
    n = len(prf_ijk)
    cx = _ranks(prf_ijk[:, 0].astype(float), rng)
    cy = 1 - _ranks(prf_ijk[:, 2].astype(float), rng)  # superior z -> upper image rows
    ecc = np.hypot(cx - 0.5, cy - 0.5)
    sigma = 0.02 + 0.10 * ecc / np.hypot(0.5, 0.5)
    pix = (np.arange(FEATURE_SIZE) + 0.5) / FEATURE_SIZE
    gy, gx = np.meshgrid(pix, pix, indexing="ij")
    rf = np.exp(
        -((gx.ravel()[None] - cx[:, None]) ** 2 + (gy.ravel()[None] - cy[:, None]) ** 2)
        / (2 * sigma[:, None] ** 2)
    )
    rf /= rf.sum(axis=1, keepdims=True)
    pooled = np.einsum("sfp,vp->svf", maps, rf)  # (n_stimuli, n_voxels, n_features)
    weights = np.stack(
        [
            rng.uniform(0.5, 1.5, n),
            rng.normal(0, 1.0, n),
            rng.normal(0, 0.5, n),
            rng.normal(0, 0.5, n),
        ],
        axis=1,
    )
    signal = (pooled * weights[None]).sum(axis=2)
    params = {"center_xy": np.stack([cx, cy], 1), "sigma": sigma, "weights": weights}
    return signal, params


def _unit(rng, n):
    v = rng.normal(size=(n, EMBED_DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _category_signal(rng, n_cat, meta):
    categories = sorted(set(PHOTO_CATEGORIES.values()))
    photos = list(PHOTO_CATEGORIES)
    e_cat = dict(zip(categories, _unit(rng, len(categories)), strict=True))
    e_photo = dict(zip(photos, _unit(rng, len(photos)), strict=True))
    w = rng.normal(0, 1.0, (n_cat, EMBED_DIM))
    v = rng.normal(0, 0.7, (n_cat, EMBED_DIM))
    cat_vec = np.stack([e_cat[m["category"]] for m in meta])
    photo_vec = np.stack([e_photo[m["source"]] for m in meta])
    signal = cat_vec @ w.T + photo_vec @ v.T
    params = {
        "e_category": {k: val.tolist() for k, val in e_cat.items()},
        "e_photo": {k: val.tolist() for k, val in e_photo.items()},
        "w": w,
        "v": v,
    }
    return signal, params


def _schedule(rng, n_train, n_test, n_test_repeats, n_sessions):
    """0-based 10k index of every trial (shuffled) and the padded train indices."""
    ks = [np.repeat(np.arange(n_test), n_test_repeats), n_test + np.arange(n_train)]
    n = n_test * n_test_repeats + n_train
    n_pad = (-n) % n_sessions
    if n_pad > n_train:
        raise BadInputError(
            f"Cannot pad {n} trials to a multiple of n_sessions={n_sessions} with "
            f"n_train={n_train}; use more train images or fewer sessions."
        )
    padded = n_test + np.sort(rng.choice(n_train, n_pad, replace=False))
    order = np.concatenate([*ks, padded])
    return rng.permutation(order), padded


def _nifti(data, affine, path):
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def make_demo_nsd(
    root,
    *,
    n_train: int = 300,
    n_test: int = 30,
    n_test_repeats: int = 3,
    n_sessions: int = 4,
    image_size: int = 256,
    n_voxels_prf: int = 1200,
    n_voxels_category: int = 400,
    noise_sd: float = 1.5,
    random_state: int = 0,
    overwrite: bool = False,
) -> Path:
    """Build a small dataset in NSD's own layout, with a known forward model.

    The forward model is described in this module's docstring and written to
    ``root/DEMO_README.md``; ``root/demo_truth.json`` holds its parameters, the
    stimulus metadata and the trial list (independent bookkeeping for tests). It
    also writes NSD's ``nsd_stim_info_merged.csv`` and a COCO-format
    ``captions_demo.json`` (see the module docstring), so
    :func:`~braindecode_suite.datasets.read_nsd_captions` works on it.

    Parameters
    ----------
    root : str | PathLike
        Folder to create (the NSD bucket root of the demo).
    n_train, n_test : int
        Distinct train images (shown once) and test images (shared, shown
        ``n_test_repeats`` times).
    n_sessions : int
        Sessions; all get the same number of trials.
    image_size : int
        Side of the square stimuli in pixels.
    n_voxels_prf, n_voxels_category : int
        Voxels of the two kinds inside ``nsdgeneral``.
    noise_sd : float
        Trial noise s.d. in percent signal change.
    random_state : int
        Seed; the same seed builds the same files.
    overwrite : bool
        Rebuild an existing demo. Without it, an existing demo is returned as is,
        unless it was built by another :data:`DEMO_VERSION` (then it is rebuilt).

    Returns
    -------
    root : Path
    """
    root = check_path("root", root, must_exist=False)
    for name, value in (
        ("n_train", n_train),
        ("n_test", n_test),
        ("n_test_repeats", n_test_repeats),
        ("n_sessions", n_sessions),
        ("n_voxels_prf", n_voxels_prf),
        ("n_voxels_category", n_voxels_category),
    ):
        check_positive_int(name, value)
    check_positive_int("image_size", image_size, minimum=16)
    if not np.isfinite(noise_sd) or noise_sd < 0:
        raise BadInputError(f"noise_sd must be a finite number >= 0, got {noise_sd!r}.")
    if n_sessions > 40:
        raise BadInputError(f"n_sessions must be <= 40 (NSD has 40), got {n_sessions}.")
    params = {
        "n_train": n_train, "n_test": n_test, "n_test_repeats": n_test_repeats,
        "n_sessions": n_sessions, "image_size": image_size, "n_voxels_prf": n_voxels_prf,
        "n_voxels_category": n_voxels_category, "noise_sd": float(noise_sd),
        "random_state": random_state,
    }  # fmt: skip
    _layout_voxels(np.random.default_rng(0), n_voxels_prf, n_voxels_category)  # checks sizes
    truth_path = root / TRUTH_FILE
    if root.exists():
        if not truth_path.is_file() and any(root.iterdir()):
            raise BadInputError(
                f"root {str(root)!r} exists and is not a demo build (no {TRUTH_FILE}); "
                "choose an empty or new folder."
            )
        version = _built_version(truth_path) if truth_path.is_file() else None
        if truth_path.is_file() and version != DEMO_VERSION:
            logger.warning(
                "Demo at %s is version %s of the demo files, this is version %d (it adds "
                "the stimulus info and captions); rebuilding it.", root, version, DEMO_VERSION,
            )  # fmt: skip
        elif truth_path.is_file() and not overwrite:
            old = json.loads(truth_path.read_text()).get("parameters", {})
            if old != params:
                logger.warning(
                    "Demo at %s was built with %s; returning it unchanged (overwrite=True to "
                    "rebuild with %s).", root, old, params,
                )  # fmt: skip
            else:
                logger.info("Demo NSD already built at %s; returning it unchanged.", root)
            return root
    t0 = time.perf_counter()
    with atomic_dir(root) as tmp:
        _build(Path(tmp), params)
    logger.info("Built demo NSD at %s in %.1f s.", root, time.perf_counter() - t0)
    return root


def _build(tmp: Path, p: dict) -> None:
    import h5py
    import scipy.io
    from PIL import Image

    from .nsd import NSDLayout

    rng = np.random.default_rng(p["random_state"])
    n_test, n_train, n_sessions = p["n_test"], p["n_train"], p["n_sessions"]
    n_images = n_test + n_train
    layout = NSDLayout(tmp, 1)

    # Stimuli, indexed by 0-based 10k index k (0..n_test-1 are the shared images).
    photos = load_photos()
    imgs_k, meta_k = _crop_stimuli(rng, photos, n_images, p["image_size"])
    # subjectim: k -> 73k id; a permutation, with the shared ids ascending like sharedix.
    perm = rng.permutation(n_images)
    perm[:n_test] = np.sort(perm[:n_test])
    if n_images > 1 and np.array_equal(perm, np.arange(n_images)):
        perm = np.roll(perm, 1)
    img_brick = np.empty_like(imgs_k)
    img_brick[perm] = imgs_k

    # Voxels and their responses to every stimulus (rows = k).
    brain_ijk, prf_ijk, cat_ijk = _layout_voxels(rng, p["n_voxels_prf"], p["n_voxels_category"])
    prf_sig, prf_params = _prf_signal(rng, prf_ijk, _feature_maps(imgs_k))
    cat_sig, cat_params = _category_signal(rng, len(cat_ijk), meta_k)
    roi_ijk = np.concatenate([prf_ijk, cat_ijk])
    signal = _zscore(np.concatenate([prf_sig, cat_sig], axis=1))
    gain = rng.uniform(1.0, 2.0, len(roi_ijk))

    order, padded = _schedule(rng, n_train, n_test, p["n_test_repeats"], n_sessions)
    n_per = len(order) // n_sessions
    lin = np.ravel_multi_index(brain_ijk.T, DEMO_GRID)
    roi_pos = np.searchsorted(lin, np.ravel_multi_index(roi_ijk.T, DEMO_GRID))
    offsets = rng.normal(0, 0.5, (n_sessions, len(brain_ijk)))
    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = -(np.array(DEMO_GRID) - 1) / 2 * VOXEL_MM  # LPI: voxel 0 = left-post-inf

    layout.betas_dir.mkdir(parents=True)
    for s in range(n_sessions):
        ks = order[s * n_per : (s + 1) * n_per]
        beta = offsets[s][None] + rng.normal(0, p["noise_sd"], (n_per, len(brain_ijk)))
        beta[:, roi_pos] += gain[None] * signal[ks]
        ints = np.clip(np.round(beta * 300), -32768, 32767).astype(np.int16)
        vol = np.zeros((*DEMO_GRID, n_per), dtype=np.int16)
        vol[tuple(brain_ijk.T)] = ints.T
        _nifti(vol, affine, layout.betas(s + 1))

    roi = np.full(DEMO_GRID, -1, dtype=np.int16)
    roi[tuple(brain_ijk.T)] = 0
    roi[tuple(roi_ijk.T)] = 1
    layout.roi("nsdgeneral").parent.mkdir(parents=True)
    _nifti(roi, affine, layout.roi("nsdgeneral"))
    # NSD's label volumes: prf-visualrois (1/2 V1v/d, 3/4 V2v/d, 5/6 V3v/d, 7 hV4) and streams
    # (5 ventral). The pRF voxels are cut into the 7 visual areas from posterior to anterior
    # (the j axis), the category voxels form the ventral stream; no random draw, so adding
    # these files changed no simulated response.
    visual = np.where(roi >= 0, 0, -1).astype(np.int16)
    by_j = prf_ijk[np.argsort(prf_ijk[:, 1], kind="stable")]
    for label, part in enumerate(np.array_split(by_j, 7), start=1):
        visual[tuple(part.T)] = label
    _nifti(visual, affine, layout.roi("prf-visualrois"))
    streams = np.where(roi >= 0, 0, -1).astype(np.int16)
    streams[tuple(cat_ijk.T)] = 5
    _nifti(streams, affine, layout.roi("streams"))
    _nifti((roi >= 0).astype(np.int16), affine, layout.brainmask)

    # Experimental design, 1-based as NSD stores it (MATLAB doubles).
    repeat = np.zeros(len(order), dtype=np.int64)
    seen: dict[int, int] = {}
    for t, k in enumerate(order):
        repeat[t] = seen.get(int(k), 0)
        seen[int(k)] = repeat[t] + 1
    sessions = np.repeat(np.arange(1, n_sessions + 1), n_per)
    basiccnt = np.array(
        [[np.sum((sessions == s) & (repeat == r)) for s in range(1, n_sessions + 1)]
         for r in range(3)], dtype=np.float64,
    )  # fmt: skip
    layout.expdesign.parent.mkdir(parents=True)
    scipy.io.savemat(
        layout.expdesign,
        {
            "masterordering": (order + 1).astype(np.float64)[None],
            "subjectim": (perm + 1).astype(np.float64)[None],
            "sharedix": (perm[:n_test] + 1).astype(np.float64)[None],
            "basiccnt": basiccnt,
            "stimpattern": np.ones((n_sessions, 1, n_per), dtype=np.float64),
        },
    )
    layout.stimuli.parent.mkdir(parents=True)
    with h5py.File(layout.stimuli, "w") as f:
        f.create_dataset(
            "imgBrick", data=img_brick, chunks=(1, *img_brick.shape[1:]), compression="gzip"
        )
    for s in range(n_test):
        png = layout.shared_png(s, int(perm[s]))
        png.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(imgs_k[s]).save(png)
    shapes = {name: photo.shape[:2] for name, photo in photos.items()}
    _write_stim_info(layout.stim_info, perm, meta_k, shapes, order, n_test)
    _write_captions(layout.annotations_dir / f"captions_{DEMO_COCO_SPLIT}.json", perm, meta_k, p)

    stimuli = [
        {"id73k": int(perm[k]), "k10k": int(k), "split": "test" if k < n_test else "train",
         "coco_id": DEMO_COCO_ID_OFFSET + int(perm[k]), **meta_k[k]}
        for k in range(n_images)
    ]  # fmt: skip
    stimuli.sort(key=lambda m: m["id73k"])
    truth = {
        "demo_version": DEMO_VERSION,
        "parameters": p,
        "note": "All indices in this file are 0-based (NSD files are 1-based).",
        "grid_shape": list(DEMO_GRID),
        "affine": affine.tolist(),
        "n_trials_per_session": int(n_per),
        "category_table": dict(PHOTO_CATEGORIES),
        "photos_used": list(photos),
        "stimuli": stimuli,
        "trials": {
            "session": sessions.tolist(),
            "k10k": order.tolist(),
            "id73k": perm[order].tolist(),
            "shared": (order < n_test).tolist(),
            "repeat": repeat.tolist(),
        },
        "padded_train_k10k": padded.tolist(),
        "voxels": {
            "prf_ijk": prf_ijk.tolist(),
            "category_ijk": cat_ijk.tolist(),
            "gain_percent": gain.tolist(),
            "prf_center_xy": prf_params["center_xy"].tolist(),
            "prf_sigma": prf_params["sigma"].tolist(),
            "prf_weights": prf_params["weights"].tolist(),
            "prf_feature_order": list(FEATURES),
            "category_w": cat_params["w"].tolist(),
            "category_v": cat_params["v"].tolist(),
            "e_category": cat_params["e_category"],
            "e_photo": cat_params["e_photo"],
        },
    }
    (tmp / "DEMO_README.md").write_text(_readme(p, n_per, len(brain_ijk), padded))
    (tmp / TRUTH_FILE).write_text(json.dumps(truth) + "\n")  # last: marks a complete build


def _write_stim_info(path: Path, perm, meta_k, shapes, order, n_test) -> None:
    """``nsd_stim_info_merged.csv`` in NSD's column layout, subject 1 only."""
    import pandas as pd

    n_images = len(perm)
    k_of = np.empty(n_images, dtype=np.int64)
    k_of[perm] = np.arange(n_images)  # 73k id -> 10k index
    reps = np.zeros((n_images, 3), dtype=np.int64)  # 1-based global trial, 0 = not shown
    count = np.zeros(n_images, dtype=np.int64)
    for t, k in enumerate(order):
        if count[k] < 3:
            reps[k, count[k]] = t + 1
        count[k] += 1
    crop_boxes = []
    for k in k_of:
        m = meta_k[k]
        h, w = shapes[m["source"]]
        x0, y0, x1, y1 = m["crop_box"]
        box = (y0 / h, (h - y1) / h, x0 / w, (w - x1) / w)  # (top, bottom, left, right)
        crop_boxes.append(str(tuple(round(float(v), 6) for v in box)))
    nsd_id = np.arange(n_images)
    df = pd.DataFrame(
        {
            "cocoId": DEMO_COCO_ID_OFFSET + nsd_id,
            "cocoSplit": DEMO_COCO_SPLIT,
            "cropBox": crop_boxes,
            "loss": 0.0,
            "nsdId": nsd_id,
            "flagged": False,
            "BOLD5000": False,
            "shared1000": k_of < n_test,
            "subject1": count[k_of] > 0,
            "subject1_rep0": reps[k_of, 0],
            "subject1_rep1": reps[k_of, 1],
            "subject1_rep2": reps[k_of, 2],
        },
        index=nsd_id,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path)  # unnamed first column = 0-based index, like NSD's file


def _write_captions(path: Path, perm, meta_k, p) -> None:
    """COCO-format caption file: each stimulus gets its source photo's captions."""
    images, annotations = [], []
    k_of = np.argsort(perm)  # 73k id -> 10k index
    for id73k, k in enumerate(k_of.tolist()):
        coco_id = DEMO_COCO_ID_OFFSET + id73k
        images.append(
            {"id": coco_id, "file_name": f"nsd{id73k + 1:05d}.png",
             "width": p["image_size"], "height": p["image_size"]}
        )  # fmt: skip
        for caption in PHOTO_CAPTIONS[meta_k[k]["source"]]:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": coco_id, "caption": caption}
            )
    coco = {
        "info": {
            "description": "braindecode_suite demo NSD captions (COCO format). Each stimulus "
            "is a crop of a photograph; it carries the photograph's three hand-written "
            "captions (crop and flip are not described).",
            "version": str(DEMO_VERSION),
        },
        "images": images,
        "annotations": annotations,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco, indent=1) + "\n")


def _readme(p, n_per, n_brain, padded) -> str:
    doc = __doc__.split("\n", 2)[2]
    return (
        "# Demo NSD (simulated)\n\n"
        "**Simulated data.** Built by `braindecode_suite.datasets.make_demo_nsd`: real "
        "photographs, simulated brain responses. It is in NSD's file layout so the real NSD "
        "pipeline runs on it unchanged. Nothing here is a measurement.\n\n"
        f"Parameters: `{json.dumps(p)}`\n\n"
        f"{p['n_sessions']} sessions × {n_per} trials; {n_brain} brain voxels; "
        f"{len(padded)} train image(s) shown twice to pad the sessions.\n\n"
        "## Forward model\n\n" + doc
    )
