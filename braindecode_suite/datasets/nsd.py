"""Natural Scenes Dataset (NSD) adapter: reads NSD as published on AWS.

Files read (paths from the bucket root, see ``shared/DATASET_FORMATS.md`` §1):

- ``nsddata/experiments/nsd/nsd_expdesign.mat``: ``masterordering`` (1×30000,
  1-based 10k indices), ``subjectim`` (8×10000, 1-based 73k ids), ``sharedix``
  (1×1000, 1-based 73k ids). :func:`read_expdesign` converts all to **0-based**.
- ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``: ``/imgBrick`` uint8
  (73000, 425, 425, 3); row i = 0-based 73k id i.
- ``nsddata/experiments/nsd/nsd_stim_info_merged.csv``: one row per 73k image (first
  column an unnamed 0-based index = ``nsdId``) with its COCO ``cocoId`` and
  ``cocoSplit``; :func:`read_nsd_stim_info`.
- ``nsddata_stimuli/stimuli/nsd/annotations/captions_{train,val}2017.json``: the COCO
  2017 caption files; :func:`read_nsd_captions`.
- ``nsddata/ppdata/subjNN/<space>/roi/<roi>.nii.gz``: voxels with value > 0 are
  in the ROI (the file also holds negative values outside the brain).
- ``nsddata_betas/ppdata/subjNN/<space>/<version>/betas_sessionSS.nii.gz``: int16
  (X, Y, Z, 750) = percent signal change × 300; or the ``.hdf5`` twin whose
  ``/betas`` appears in h5py as (750, Z, Y, X).
- ``nsddata_betas/ppdata/subjNN/<space>/<version>/ncsnr.nii.gz``: float noise-ceiling SNR
  per voxel; :func:`read_nsd_ncsnr`.
- ``space='fsaverage'``: ``nsddata_betas/ppdata/subjNN/fsaverage/<version>/{lh,rh}.
  betas_sessionSS.mgh`` (FreeSurfer MGH, (163842, 1, 1, 750) per hemisphere, float, already
  percent signal change); surface ROIs ``nsddata/freesurfer/fsaverage/label/{lh,rh}.<roi>.mgz``
  and ``{lh,rh}.ncsnr.mgh`` next to the betas. The beta paths are in DATASET_FORMATS §1; the
  label and ncsnr paths follow the NSD data manual's layout and are UNCONFIRMED.

Trial → stimulus: global trial ``t = (session - 1) * n_per_session + j`` (``j`` =
volume of the beta file, ``n_per_session`` = 750 on NSD), ``k = masterordering[t]``,
``id73k = subjectim[subject - 1, k]`` (all 0-based here). A trial is shared (test)
iff ``k < len(sharedix)``: the first columns of every ``subjectim`` are the shared
images in ``sharedix`` order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..utils.logging import logger, progress_disabled, verbose_level
from ..utils.validation import BadInputError, check_option, check_path, check_positive_int
from ._trials import Trials
from .coco import _collect_captions, _missing_message

__all__ = [
    "NSDLayout",
    "read_expdesign",
    "read_nsd_stimuli",
    "read_nsd_stim_info",
    "read_nsd_captions",
    "iter_nsd_stimuli",
    "load_nsd",
    "shared982_mask",
    "NSD_SPACES",
    "NSD_BETA_VERSIONS",
    "NSD_ROIS",
    "BRAIN_CORRELATION_ROIS",
    "nsd_roi_masks",
    "read_nsd_ncsnr",
    "NSD_VOLUME_SPACES",
    "FSAVERAGE_N_VERTICES",
]

NSD_VOLUME_SPACES = ("func1pt8mm", "func1mm")
#: ``'fsaverage'``: surface betas, both hemispheres' vertices (lh then rh) as voxels.
NSD_SPACES = (*NSD_VOLUME_SPACES, "fsaverage")
#: Vertices per hemisphere of FreeSurfer's fsaverage (ico7) surface.
FSAVERAGE_N_VERTICES = 163842
HEMISPHERES = ("lh", "rh")
NSD_BETA_VERSIONS = ("betas_fithrf_GLMdenoise_RR", "betas_fithrf", "betas_assumehrf")
NSD_TEST_SETS = ("shared1000", "shared982")
#: Sessions public before the 2023 release; the 982-image test set is defined on them.
N_SESSIONS_982 = 37
#: NSD stores betas as percent signal change × 300.
BETA_SCALE = 300.0

_HOW_TO_GET = (
    "NSD is not downloaded automatically: accept the NSD Terms and Conditions and fill "
    "in the NSD Data Access form (naturalscenesdataset.org), copy the files from "
    "s3://natural-scenes-dataset/ keeping the bucket layout, and pass that folder as "
    "--data-dir (data_dir=...). For an offline demo, build one with make_demo_nsd()."
)


class NSDLayout:
    """Paths of one NSD subject's files under ``data_dir`` (the bucket root).

    Parameters
    ----------
    data_dir : str | PathLike
        Folder holding ``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``.
    subject : int
        1–8.
    space : 'func1pt8mm' | 'func1mm' | 'fsaverage'
        Volume space of betas and ROIs, or the fsaverage surface (see
        :meth:`surface_betas`, :meth:`surface_roi`).
    beta_version : str
        One of ``NSD_BETA_VERSIONS``.
    """

    def __init__(
        self,
        data_dir,
        subject: int,
        *,
        space: str = "func1pt8mm",
        beta_version: str = "betas_fithrf_GLMdenoise_RR",
    ):
        self.data_dir = check_path("data_dir", data_dir, must_exist=False)
        subject = check_positive_int("subject", subject)
        self.subject = check_option("subject", subject, range(1, 9))
        self.space = check_option("space", space, NSD_SPACES)
        self.beta_version = check_option("beta_version", beta_version, NSD_BETA_VERSIONS)

    @property
    def subj(self) -> str:
        return f"subj{self.subject:02d}"

    @property
    def expdesign(self) -> Path:
        return self.data_dir / "nsddata/experiments/nsd/nsd_expdesign.mat"

    @property
    def stimuli(self) -> Path:
        return self.data_dir / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"

    @property
    def stim_info(self) -> Path:
        """``nsd_stim_info_merged.csv`` (73k id -> COCO id and split; not per subject)."""
        return self.data_dir / "nsddata/experiments/nsd/nsd_stim_info_merged.csv"

    @property
    def annotations_dir(self) -> Path:
        """Folder of the COCO 2017 caption files (``captions_<split>.json``)."""
        return self.data_dir / "nsddata_stimuli/stimuli/nsd/annotations"

    @property
    def ppdata_dir(self) -> Path:
        return self.data_dir / "nsddata/ppdata" / self.subj / self.space

    def roi(self, roi: str = "nsdgeneral") -> Path:
        return self.ppdata_dir / "roi" / f"{roi}.nii.gz"

    @property
    def brainmask(self) -> Path:
        return self.ppdata_dir / "brainmask.nii.gz"

    @property
    def betas_dir(self) -> Path:
        return self.data_dir / "nsddata_betas/ppdata" / self.subj / self.space / self.beta_version

    def betas(self, session: int, ext: str = ".nii.gz") -> Path:
        check_option("ext", ext, (".nii.gz", ".hdf5"))
        return self.betas_dir / f"betas_session{session:02d}{ext}"

    def surface_betas(self, session: int, hemi: str) -> Path:
        """``{lh,rh}.betas_sessionSS.mgh`` of one hemisphere (``space='fsaverage'``)."""
        check_option("hemi", hemi, HEMISPHERES)
        return self.betas_dir / f"{hemi}.betas_session{session:02d}.mgh"

    def surface_roi(self, roi: str, hemi: str) -> Path:
        """fsaverage surface ROI ``nsddata/freesurfer/fsaverage/label/<hemi>.<roi>.mgz``.

        Path from the NSD data manual's layout (UNCONFIRMED against the bucket listing).
        """
        check_option("hemi", hemi, HEMISPHERES)
        return self.data_dir / "nsddata/freesurfer/fsaverage/label" / f"{hemi}.{roi}.mgz"

    def ncsnr(self, hemi: str | None = None) -> Path:
        """Published noise-ceiling SNR: ``ncsnr.nii.gz`` (volume spaces) or
        ``<hemi>.ncsnr.mgh`` (``space='fsaverage'``; path UNCONFIRMED), next to the betas."""
        if self.space == "fsaverage":
            return self.betas_dir / f"{check_option('hemi', hemi, HEMISPHERES)}.ncsnr.mgh"
        return self.betas_dir / "ncsnr.nii.gz"

    def shared_png(self, shared_index: int, id73k: int) -> Path:
        """PNG of a shared image; both numbers 0-based (the file name is 1-based)."""
        return (
            self.data_dir
            / "nsddata/stimuli/nsd/shared1000"
            / f"shared{shared_index + 1:04d}_nsd{id73k + 1:05d}.png"
        )

    def beta_file(self, session: int) -> Path | None:
        """The session's beta file (NIfTI preferred, else HDF5), or None."""
        for ext in (".nii.gz", ".hdf5"):
            path = self.betas(session, ext)
            if path.is_file():
                return path
        return None

    def available_sessions(self) -> list[int]:
        """Sorted session numbers (1-based) whose beta file exists (.nii.gz or .hdf5; for
        ``space='fsaverage'`` both hemispheres' .mgh)."""
        if not self.betas_dir.is_dir():
            return []
        found = set()
        if self.space == "fsaverage":  # a session counts when both hemispheres exist
            for p in self.betas_dir.glob("lh.betas_session*.mgh"):
                digits = p.name[len("lh.betas_session") : -len(".mgh")]
                if digits.isdigit() and (self.betas_dir / ("rh" + p.name[2:])).is_file():
                    found.add(int(digits))
            return sorted(found)
        for p in self.betas_dir.iterdir():
            name = p.name
            if name.startswith("betas_session") and name.endswith((".nii.gz", ".hdf5")):
                digits = name[len("betas_session") :].split(".")[0]
                if digits.isdigit():
                    found.add(int(digits))
        return sorted(found)

    def __repr__(self) -> str:
        return (
            f"NSDLayout({str(self.data_dir)!r}, subject={self.subject}, space={self.space!r}, "
            f"beta_version={self.beta_version!r})"
        )


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise BadInputError(f"NSD {what} not found: {str(path)!r}. {_HOW_TO_GET}")
    return path


def read_expdesign(path) -> dict:
    """Read ``nsd_expdesign.mat`` and convert its indices to 0-based.

    Returns
    -------
    design : dict
        ``masterordering`` : ndarray of int64, shape (n_trials_total,)
            0-based 10k index of each global trial (the file stores 1-based).
        ``subjectim`` : ndarray of int64, shape (n_subjects, n_images)
            0-based 73k id of each subject's 10k image (column = 10k index).
        ``sharedix`` : ndarray of int64, shape (n_shared,)
            0-based 73k ids of the shared images.
        ``basiccnt``, ``stimpattern`` : raw arrays when present.
    """
    import scipy.io

    path = _require(check_path("path", path, must_exist=False), "experimental design")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for corrupt files
        raise BadInputError(f"Could not read {str(path)!r} as a MATLAB file: {err}") from err
    out = {}
    for name, ndim in (("masterordering", 1), ("subjectim", 2), ("sharedix", 1)):
        if name not in mat:
            raise BadInputError(
                f"{str(path)!r} lacks the variable {name!r} (found: "
                f"{sorted(k for k in mat if not k.startswith('__'))}); is it nsd_expdesign.mat?"
            )
        arr = np.asarray(mat[name])
        arr = arr.reshape(-1) if ndim == 1 else np.atleast_2d(arr)
        if arr.size and arr.min() < 1:
            raise BadInputError(
                f"{str(path)!r}: {name!r} holds values < 1 but NSD stores 1-based indices."
            )
        out[name] = arr.astype(np.int64) - 1
    for name in ("basiccnt", "stimpattern"):
        if name in mat:
            out[name] = np.asarray(mat[name])
    return out


def _stimuli_dataset(f, path):
    if "imgBrick" not in f:
        raise BadInputError(f"{str(path)!r} lacks the dataset '/imgBrick' (found {list(f)}).")
    return f["imgBrick"]


def _check_ids(ids73k, n_images: int, path) -> np.ndarray:
    ids = np.asarray(ids73k)
    if ids.dtype.kind not in "iu" and ids.size:
        raise BadInputError(f"ids73k must be integers, got dtype {ids.dtype}.")
    ids = ids.astype(np.int64).reshape(-1)
    bad = (ids < 0) | (ids >= n_images)
    if bad.any():
        raise BadInputError(
            f"ids73k holds {int(bad.sum())} id(s) out of range (e.g. {int(ids[bad][0])}): "
            f"{str(path)!r} has an imgBrick of length {n_images}, so 0-based ids must be in "
            f"[0, {n_images - 1}]."
        )
    return ids


def iter_nsd_stimuli(path, ids73k, *, block: int = 64) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield the images of ``ids73k`` in blocks, in the order asked.

    Parameters
    ----------
    path : str | PathLike
        ``nsd_stimuli.hdf5``.
    ids73k : array-like of int, shape (n,)
        0-based 73k ids (= imgBrick rows); repeats allowed.
    block : int
        Images per block (bounds memory: 64 × 425 × 425 × 3 ≈ 35 MB).

    Yields
    ------
    rows : slice
        Positions in ``ids73k`` this block covers.
    images : ndarray of uint8, shape (len(rows), H, W, 3)
    """
    import h5py

    block = check_positive_int("block", block)
    path = _require(check_path("path", path, must_exist=False), "stimuli file")
    with h5py.File(path, "r") as f:
        dset = _stimuli_dataset(f, path)
        ids = _check_ids(ids73k, dset.shape[0], path)
        for start in range(0, len(ids), block):
            chunk = ids[start : start + block]
            # h5py fancy indexing needs sorted, unique indices.
            uniq, inverse = np.unique(chunk, return_inverse=True)
            imgs = dset[uniq] if len(uniq) else np.zeros((0, *dset.shape[1:]), np.uint8)
            yield slice(start, start + len(chunk)), np.asarray(imgs, dtype=np.uint8)[inverse]


def read_nsd_stimuli(path, ids73k, *, block: int = 64) -> np.ndarray:
    """Read the images of ``ids73k`` (0-based) as uint8 (n, H, W, 3), in the order asked."""
    import h5py

    path = _require(check_path("path", path, must_exist=False), "stimuli file")
    with h5py.File(path, "r") as f:
        dset = _stimuli_dataset(f, path)
        shape = dset.shape
    ids = _check_ids(ids73k, shape[0], path)
    out = np.empty((len(ids), *shape[1:]), dtype=np.uint8)
    for rows, imgs in iter_nsd_stimuli(path, ids, block=block):
        out[rows] = imgs
    return out


def shared982_mask(
    masterordering: np.ndarray, n_shared: int, n_per_session: int, n_sessions: int = 37
) -> np.ndarray:
    """Boolean (n_shared,): shared images with ≥ 1 trial in sessions 1..``n_sessions``.

    ``masterordering`` is 0-based (as returned by :func:`read_expdesign`). On NSD this
    gives the 982-image test set, the same for every subject.
    """
    early = np.asarray(masterordering)[: n_sessions * n_per_session]
    seen = np.zeros(n_shared, dtype=bool)
    seen[early[early < n_shared]] = True
    return seen


def _read_roi(path: Path):
    import nibabel as nib

    img = nib.load(path)
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadInputError(f"ROI {str(path)!r} must be a 3-D volume, got shape {data.shape}.")
    return data > 0, img.affine


def _beta_header(path: Path):
    """(X, Y, Z) grid, number of trials and affine (None for .hdf5) of a beta file."""
    if path.name.endswith(".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if "betas" not in f:
                raise BadInputError(f"{str(path)!r} lacks the dataset '/betas' (found {list(f)}).")
            shape = f["betas"].shape
        if len(shape) != 4:
            raise BadInputError(f"{str(path)!r}: /betas must be 4-D (n, Z, Y, X), got {shape}.")
        return tuple(shape[:0:-1]), int(shape[0]), None
    import nibabel as nib

    img = nib.load(path)
    if len(img.shape) != 4:
        raise BadInputError(f"{str(path)!r} must be 4-D (X, Y, Z, n), got shape {img.shape}.")
    return tuple(img.shape[:3]), int(img.shape[3]), img.affine


def _read_betas(path: Path, ijk: np.ndarray, n: int, *, chunk: int = 50) -> np.ndarray:
    """int16 betas at voxels ``ijk`` (n_voxels, 3) -> (n, n_voxels), reading in slabs."""
    out = np.empty((n, len(ijk)), dtype=np.int16)
    i, j, k = ijk.T
    if path.name.endswith(".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            dset = f["betas"]  # h5py view (n, Z, Y, X): MATLAB dims reversed
            z_lo, z_hi = (int(k.min()), int(k.max()) + 1) if len(k) else (0, 0)
            step = max(1, chunk // 10)
            for z0 in range(z_lo, z_hi, step):
                sel = (k >= z0) & (k < z0 + step)
                if sel.any():
                    slab = dset[:, z0 : z0 + step, :, :]
                    out[:, sel] = slab[:, k[sel] - z0, j[sel], i[sel]]
        return out
    import nibabel as nib

    # keep_file_open: the gzip stream stays open, so reading volumes in increasing
    # order decompresses the file once instead of once per slab.
    img = nib.load(path, keep_file_open=True)
    proxy = img.dataobj  # int16 as stored; never get_fdata (4 GB per NSD session)
    for t0 in range(0, n, chunk):
        vols = np.asarray(proxy[..., t0 : t0 + chunk])
        out[t0 : t0 + vols.shape[3]] = vols[i, j, k, :].T
    return out


def _volume_source(layout: NSDLayout, roi: str, sessions: list[int], available: list[int]):
    """Check the volume beta files and ROI; return the session reader and info entries."""
    files = {}
    for s in sessions:
        path = layout.beta_file(s)
        if path is None:
            raise BadInputError(
                f"Beta file for session {s} not found: {str(layout.betas(s))!r} (nor .hdf5). "
                f"Available sessions: {available}. {_HOW_TO_GET}"
            )
        files[s] = path

    roi_path = _require(layout.roi(roi), f"ROI {roi!r}")
    mask, roi_affine = _read_roi(roi_path)
    ijk = np.argwhere(mask)
    if len(ijk) == 0:
        raise BadInputError(f"ROI {str(roi_path)!r} has no voxel with value > 0.")

    headers = {s: _beta_header(p) for s, p in files.items()}
    n_per = {s: h[1] for s, h in headers.items()}
    if len(set(n_per.values())) != 1:
        raise BadInputError(
            f"Beta files disagree on the number of trials per session: {n_per}; NSD sessions "
            "all hold 750 trials."
        )
    n_per_session = next(iter(n_per.values()))
    for s, (grid, _, affine) in headers.items():
        same_affine = affine is None or np.allclose(affine, roi_affine, atol=1e-3)
        if grid != mask.shape or not same_affine:
            what = "shape" if grid != mask.shape else "affine"
            raise BadInputError(
                f"ROI and betas are on different grids ({what} differs): ROI "
                f"{str(roi_path)!r} has shape {mask.shape}, betas {str(files[s])!r} have shape "
                f"{grid}. Use the ROI of the same subject and space ({layout.space!r})."
            )

    def read_session(s: int, out: np.ndarray) -> None:
        raw = _read_betas(files[s], ijk, n_per_session)
        np.divide(raw, np.float32(BETA_SCALE), out=out, dtype=np.float32)

    extra = {
        "beta_scale": BETA_SCALE,
        "voxel_ijk": ijk,
        "affine": roi_affine,
        "grid_shape": tuple(int(v) for v in mask.shape),
    }
    file_info = {"roi": str(roi_path), "betas": {int(s): str(p) for s, p in files.items()}}
    return read_session, n_per_session, len(ijk), extra, file_info


def _mgh_header(path: Path) -> tuple[int, int, np.dtype]:
    """(n_vertices, n_trials, stored dtype) of a surface beta file (V, 1, 1, n)."""
    import nibabel as nib

    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several types for corrupt files
        raise BadInputError(
            f"Could not read {str(path)!r} as a FreeSurfer MGH file: {err}"
        ) from err
    shape = tuple(int(n) for n in img.shape)  # MGH headers give numpy ints
    if len(shape) != 4 or shape[1:3] != (1, 1):
        raise BadInputError(
            f"{str(path)!r} must have shape (n_vertices, 1, 1, n_trials) as NSD's surface "
            f"betas (163842, 1, 1, 750), got {shape}."
        )
    return int(shape[0]), int(shape[3]), img.get_data_dtype()


def _read_surface(path: Path, what: str) -> np.ndarray:
    """A per-vertex map (.mgh / .mgz, shape (V,) or (V, 1, 1[, 1])) as a 1-D array."""
    import nibabel as nib

    try:
        data = np.asarray(nib.load(path).dataobj)
    except Exception as err:
        raise BadInputError(f"Could not read {what} {str(path)!r}: {err}") from err
    if data.ndim == 0 or any(n != 1 for n in data.shape[1:]):
        raise BadInputError(
            f"{what} {str(path)!r} must hold one value per vertex, shape (n_vertices, 1, 1), "
            f"got {data.shape}."
        )
    return data.reshape(-1)


def _read_surface_betas(path: Path, vertices: np.ndarray, out: np.ndarray, scale: float,
                        *, chunk: int = 50) -> None:  # fmt: skip
    """Betas of ``vertices`` of one .mgh into ``out`` (n_trials, n_vertices), by slabs."""
    import nibabel as nib

    proxy = nib.load(path).dataobj  # stored dtype; never the whole (V, 1, 1, n) in float64
    n = out.shape[0]
    for t0 in range(0, n, chunk):
        vols = np.asarray(proxy[:, 0, 0, t0 : t0 + chunk])
        block = vols[vertices].T
        if scale != 1:
            np.divide(block, np.float32(scale), out=out[t0 : t0 + chunk], dtype=np.float32)
        else:
            out[t0 : t0 + chunk] = block


def _surface_source(layout: NSDLayout, roi: str | None, sessions: list[int], available):
    """Check the fsaverage beta files and surface ROI; return the reader and info entries."""
    files = {}
    for s in sessions:
        pair = {h: layout.surface_betas(s, h) for h in HEMISPHERES}
        lacking = [str(p) for p in pair.values() if not p.is_file()]
        if lacking:
            raise BadInputError(
                f"Surface beta file(s) for session {s} not found: {lacking}. Available "
                f"sessions (both hemispheres): {available}. {_HOW_TO_GET}"
            )
        files[s] = pair
    headers = {(s, h): _mgh_header(p) for s, pair in files.items() for h, p in pair.items()}
    n_trials = {f"session {s} {h}": hd[1] for (s, h), hd in headers.items()}
    if len(set(n_trials.values())) != 1:
        raise BadInputError(
            f"Surface beta files disagree on the number of trials: {n_trials}; NSD sessions "
            "all hold 750 trials."
        )
    n_per_session = next(iter(n_trials.values()))
    n_vert = {}
    for h in HEMISPHERES:
        counts = {s: headers[s, h][0] for s in sessions}
        if len(set(counts.values())) != 1:
            raise BadInputError(
                f"{h} surface beta files disagree on the number of vertices: {counts}; "
                f"fsaverage has {FSAVERAGE_N_VERTICES} per hemisphere."
            )
        n_vert[h] = counts[sessions[0]]

    # NSD's surface betas are float percent signal change (DATASET_FORMATS §1): no scaling.
    # An integer file is taken to follow NSD's int16 convention (× 300) and is divided.
    scale = {h: BETA_SCALE if headers[sessions[0], h][2].kind in "iu" else 1.0 for h in n_vert}
    vertices, roi_paths = {}, None
    if roi is None:
        vertices = {h: np.arange(n_vert[h]) for h in HEMISPHERES}
    else:
        roi_paths = {
            h: _require(layout.surface_roi(roi, h), f"surface ROI {roi!r}") for h in n_vert
        }
        for h, path in roi_paths.items():
            values = _read_surface(path, "surface ROI")
            if len(values) != n_vert[h]:
                raise BadInputError(
                    f"Surface ROI {str(path)!r} has {len(values)} vertices but the {h} betas "
                    f"{str(files[sessions[0]][h])!r} have {n_vert[h]}; use an fsaverage label."
                )
            vertices[h] = np.flatnonzero(values > 0)
        if not sum(len(v) for v in vertices.values()):
            raise BadInputError(
                f"Surface ROI {roi!r} ({[str(p) for p in roi_paths.values()]}) has no vertex "
                "with value > 0."
            )
    n_lh = len(vertices["lh"])

    def read_session(s: int, out: np.ndarray) -> None:
        _read_surface_betas(files[s]["lh"], vertices["lh"], out[:, :n_lh], scale["lh"])
        _read_surface_betas(files[s]["rh"], vertices["rh"], out[:, n_lh:], scale["rh"])

    extra = {
        "beta_scale": scale["lh"],
        "vertex_index": np.concatenate([vertices["lh"], n_vert["lh"] + vertices["rh"]]),
        "hemisphere": np.repeat(np.array(HEMISPHERES), [n_lh, len(vertices["rh"])]),
        "n_vertices_per_hemisphere": dict(n_vert),
        "affine": None,
        "grid_shape": None,
    }
    file_info = {
        "roi": None if roi_paths is None else {h: str(p) for h, p in roi_paths.items()},
        "betas": {int(s): {h: str(p) for h, p in pair.items()} for s, pair in files.items()},
    }
    return read_session, n_per_session, n_lh + len(vertices["rh"]), extra, file_info


def load_nsd(
    data_dir,
    subject: int = 1,
    *,
    sessions: Sequence[int] | None = None,
    roi: str | None = "nsdgeneral",
    space: str = "func1pt8mm",
    beta_version: str = "betas_fithrf_GLMdenoise_RR",
    test_set: str = "shared1000",
    verbose=None,
) -> Trials:
    """Load one NSD subject's single-trial betas in an ROI, with stimulus ids and splits.

    Parameters
    ----------
    data_dir : str | PathLike
        NSD bucket root (see :class:`NSDLayout`).
    subject : int
        1–8.
    sessions : sequence of int | None
        1-based session numbers; None = every session with a beta file.
    roi : str | None
        ROI file name under ``roi/`` (voxels with value > 0 are kept). With
        ``space='fsaverage'``: the label name of ``nsddata/freesurfer/fsaverage/label/
        {lh,rh}.<roi>.mgz`` (vertices with value > 0 kept), or None for every vertex.
    space, beta_version : str
        See :class:`NSDLayout`. ``space='fsaverage'`` reads ``{lh,rh}.betas_sessionSS.mgh``
        (float percent signal change, so not divided by 300); the voxels are then the kept
        vertices of lh followed by those of rh.
    test_set : 'shared1000' | 'shared982'
        ``'shared1000'``: every trial of a shared image is test. ``'shared982'``: the
        shared images with ≥ 1 trial in sessions 1–37 are test; trials of the other
        shared images (seen only in sessions 38–40) are **dropped**, since they are
        neither the test set nor the non-shared training images.
    verbose : bool | str | int | None
        Log level for this call.

    Returns
    -------
    trials : Trials
        ``X`` float32 (n_trials, n_voxels) in percent signal change (int16 / 300),
        ``stimulus_ids`` 0-based 73k ids, ``split`` 'train'/'test', ``session``,
        ``repeat`` (0, 1, 2: how many times the image was shown before this trial in
        the full ``masterordering``, so it does not depend on which sessions are
        loaded), ``info`` with units, files, ``voxel_ijk`` and ``affine``. With
        ``space='fsaverage'``, ``info`` has instead ``vertex_index`` (n_voxels,: index
        into lh + rh vertices concatenated, rh offset by the lh vertex count),
        ``hemisphere`` (n_voxels,: ``'lh'``/``'rh'``) and ``n_vertices_per_hemisphere``;
        ``affine`` and ``grid_shape`` are None.

    Notes
    -----
    Sessions are read one at a time, in slabs of 50 trials, into one preallocated float32
    array: memory peaks near the size of the returned ``X`` plus one session's int16 betas
    at the kept voxels (the whole 4-D volume is never decoded at once). See
    ``benchmarks/fmri_io.py`` for measured time and peak memory.
    """
    level = verbose_level(verbose)
    old_level = logger.level
    logger.setLevel(level)
    try:
        return _load_nsd(data_dir, subject, sessions, roi, space, beta_version, test_set)
    finally:
        logger.setLevel(old_level)


def _load_nsd(data_dir, subject, sessions, roi, space, beta_version, test_set):
    from tqdm.auto import tqdm

    check_option("test_set", test_set, NSD_TEST_SETS)
    surface_all = roi is None and space == "fsaverage"
    if not surface_all and (not isinstance(roi, str) or not roi or os.sep in roi):
        raise BadInputError(
            f"roi must be an ROI file name such as 'nsdgeneral' (or None with "
            f"space='fsaverage' for every vertex), got {roi!r}."
        )
    layout = NSDLayout(data_dir, subject, space=space, beta_version=beta_version)
    if not layout.data_dir.is_dir():
        raise BadInputError(f"NSD data_dir {str(layout.data_dir)!r} does not exist. {_HOW_TO_GET}")
    design = read_expdesign(layout.expdesign)
    available = layout.available_sessions()
    if sessions is None:
        if not available:
            kind = (
                "{lh,rh}.betas_sessionSS.mgh"
                if space == "fsaverage"
                else "betas_sessionSS.nii.gz or .hdf5"
            )
            raise BadInputError(
                f"No beta files ({kind}) in {str(layout.betas_dir)!r}. {_HOW_TO_GET}"
            )
        sessions = available
    sessions = sorted({check_positive_int("sessions", s) for s in sessions})
    if not sessions:
        raise BadInputError("sessions is empty; pass None for all available sessions.")
    if space == "fsaverage":
        read_session, n_per_session, n_voxels, extra, file_info = _surface_source(
            layout, roi, sessions, available
        )
    else:
        read_session, n_per_session, n_voxels, extra, file_info = _volume_source(
            layout, roi, sessions, available
        )

    masterordering = design["masterordering"]
    subjectim = design["subjectim"]
    sharedix = design["sharedix"]
    n_shared = len(sharedix)
    needed = max(sessions) * n_per_session
    if len(masterordering) < needed:
        raise BadInputError(
            f"{str(layout.expdesign)!r}: masterordering has {len(masterordering)} trials but "
            f"session {max(sessions)} × {n_per_session} trials/session needs {needed}."
        )
    if subjectim.shape[0] < subject:
        raise BadInputError(
            f"{str(layout.expdesign)!r}: subjectim has rows for {subjectim.shape[0]} "
            f"subject(s), cannot map subject {subject}."
        )
    if masterordering.max() >= subjectim.shape[1]:
        raise BadInputError(
            f"{str(layout.expdesign)!r}: masterordering refers to 10k index "
            f"{int(masterordering.max()) + 1} but subjectim has {subjectim.shape[1]} columns."
        )
    if not np.array_equal(subjectim[subject - 1, :n_shared], sharedix):
        logger.warning(
            "subjectim[%d, :%d] differs from sharedix; the shared split follows the 10k "
            "index (k < %d) as NSD defines it.",
            subject - 1,
            n_shared,
            n_shared,
        )

    # Repeat index from the whole masterordering: 0 for the first showing, then 1, 2.
    order = np.argsort(masterordering, kind="stable")
    sorted_k = masterordering[order]
    first = np.searchsorted(sorted_k, sorted_k, side="left")
    repeat_all = np.empty_like(masterordering)
    repeat_all[order] = np.arange(len(sorted_k)) - first

    if test_set == "shared982":
        is_test_image = shared982_mask(masterordering, n_shared, n_per_session, N_SESSIONS_982)
    else:
        is_test_image = np.ones(n_shared, dtype=bool)

    # One float32 array filled session by session: peak memory ≈ X + one session's read.
    X = np.empty((len(sessions) * n_per_session, n_voxels), dtype=np.float32)
    k_parts, sess_parts, t_parts = [], [], []
    bar = tqdm(sessions, desc=f"NSD subj{subject:02d} betas", disable=progress_disabled())
    for n, s in enumerate(bar):
        read_session(s, X[n * n_per_session : (n + 1) * n_per_session])
        t = (s - 1) * n_per_session + np.arange(n_per_session)
        t_parts.append(t)
        k_parts.append(masterordering[t])
        sess_parts.append(np.full(n_per_session, s, dtype=np.int64))
        logger.debug("read session %d: %d trials × %d voxels", s, n_per_session, n_voxels)
    k = np.concatenate(k_parts)
    t = np.concatenate(t_parts)
    session = np.concatenate(sess_parts)
    shared = k < n_shared
    split = np.where(shared, "test", "train")
    keep = ~shared | is_test_image[np.minimum(k, n_shared - 1)]
    n_dropped = int((~keep).sum())
    if n_dropped:
        logger.info(
            "test_set='shared982': dropping %d trial(s) of shared images outside the 982 set.",
            n_dropped,
        )
    info = {
        "dataset": "nsd",
        "data_dir": str(data_dir),
        "units": "percent signal change",
        "beta_version": beta_version,
        "space": space,
        "roi": roi,
        "test_set": test_set,
        "n_voxels": int(n_voxels),
        "n_trials_per_session": int(n_per_session),
        "n_shared": int(n_shared),
        "n_test_images": int(is_test_image.sum()),
        "n_trials_dropped": n_dropped,
        "sessions": sessions,
        **extra,
        "files": {"expdesign": str(layout.expdesign), **file_info, "stimuli": str(layout.stimuli)},
    }
    trials = Trials(
        X=X if keep.all() else X[keep],
        stimulus_ids=subjectim[subject - 1, k[keep]],
        split=split[keep],
        session=session[keep],
        repeat=repeat_all[t[keep]],
        subject=subject,
        info=info,
    )
    logger.info("Loaded %r", trials)
    return trials


# ----------------------------------------------------------------------------- ROIs
#: Named regions built from NSD's ROI volumes: ``{name: (file, label values)}``; ``None``
#: means "value > 0". Labels follow the files' ``.ctab`` tables in ``nsddata/freesurfer/
#: subjNN/label/``: prf-visualrois 1 V1v, 2 V1d, 3 V2v, 4 V2d, 5 V3v, 6 V3d, 7 hV4;
#: streams 1 early, 2 midventral, 3 midlateral, 4 midparietal, 5 ventral, 6 lateral, 7 parietal.
NSD_ROIS = {
    "nsdgeneral": ("nsdgeneral", None),
    "V1": ("prf-visualrois", (1, 2)),
    "V2": ("prf-visualrois", (3, 4)),
    "V3": ("prf-visualrois", (5, 6)),
    "V4": ("prf-visualrois", (7,)),
    "early": ("streams", (1,)),
    "midventral": ("streams", (2,)),
    "midlateral": ("streams", (3,)),
    "midparietal": ("streams", (4,)),
    "ventral": ("streams", (5,)),
    "lateral": ("streams", (6,)),
    "parietal": ("streams", (7,)),
}
#: MindEye2's brain-correlation regions.
BRAIN_CORRELATION_ROIS = ("nsdgeneral", "V1", "V2", "V3", "V4", "higher_vis")


def nsd_roi_masks(
    data_dir,
    subject: int,
    voxel_ijk,
    *,
    rois=BRAIN_CORRELATION_ROIS,
    space: str = "func1pt8mm",
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Boolean masks over loaded voxels for NSD's named regions.

    Parameters
    ----------
    data_dir : path
        The NSD root (the folder holding ``nsddata/``).
    subject : int
    voxel_ijk : array of shape (n_voxels, 3)
        Grid indices of the loaded voxels (``trials.info['voxel_ijk']`` of :func:`load_nsd`).
    rois : sequence of str
        Names from :data:`NSD_ROIS`, or ``'higher_vis'``: the ``nsdgeneral`` voxels outside
        V1-V4 (our definition; MindEye2 ships its own mask file).
    space : str

    Returns
    -------
    masks : dict of str to ndarray of bool, shape (n_voxels,)
        Regions whose file exists and that hold at least one loaded voxel.
    missing : dict of str to str
        The other requested regions with the reason.
    """
    if space == "fsaverage":
        raise BadInputError(
            "space='fsaverage' is not supported by nsd_roi_masks (volume ROIs only); "
            "load_nsd(..., space='fsaverage', roi=<label>) selects fsaverage label vertices."
        )
    ijk = _check_ijk(voxel_ijk)
    if isinstance(rois, str):
        rois = [rois]
    for name in rois:
        check_option("rois", name, (*NSD_ROIS, "higher_vis"))
    layout = NSDLayout(data_dir, subject, space=space)
    volumes: dict[str, np.ndarray | str] = {}

    def volume(file: str):
        if file not in volumes:
            path = layout.roi(file)
            if not path.is_file():
                volumes[file] = f"{str(path)!r} does not exist"
            else:
                import nibabel as nib

                data = np.asarray(nib.load(path).dataobj)
                data = data[..., 0] if data.ndim == 4 else data
                if data.ndim != 3 or (ijk.max(axis=0) >= data.shape).any() or (ijk < 0).any():
                    volumes[file] = (
                        f"{str(path)!r} has shape {data.shape}, which does not hold the "
                        "loaded voxels (another subject or space?)"
                    )
                else:
                    volumes[file] = data[tuple(ijk.T)]
        return volumes[file]

    def region(name: str):
        file, labels = NSD_ROIS[name]
        values = volume(file)
        if isinstance(values, str):
            return values
        return values > 0 if labels is None else np.isin(np.round(values), labels)

    masks: dict[str, np.ndarray] = {}
    missing: dict[str, str] = {}
    for name in rois:
        if name == "higher_vis":
            parts = [region(n) for n in ("nsdgeneral", "V1", "V2", "V3", "V4")]
            bad = [p for p in parts if isinstance(p, str)]
            mask = bad[0] if bad else parts[0] & ~(parts[1] | parts[2] | parts[3] | parts[4])
        else:
            mask = region(name)
        if isinstance(mask, str):
            missing[name] = mask
        elif not mask.any():
            missing[name] = "no loaded voxel lies in this region"
        else:
            masks[name] = mask
    return masks, missing


def _check_ijk(voxel_ijk) -> np.ndarray:
    ijk = np.asarray(voxel_ijk)
    if ijk.ndim != 2 or ijk.shape[1] != 3 or ijk.dtype.kind not in "iu":
        raise BadInputError(
            f"voxel_ijk must be an integer array of shape (n_voxels, 3), got "
            f"{ijk.dtype} {ijk.shape}."
        )
    return ijk


def read_nsd_ncsnr(
    data_dir,
    subject: int,
    voxel_ijk,
    *,
    space: str = "func1pt8mm",
    beta_version: str = "betas_fithrf_GLMdenoise_RR",
) -> np.ndarray:
    """NSD's published noise-ceiling SNR (``ncsnr``) at the loaded voxels.

    Reads ``nsddata_betas/ppdata/subjNN/<space>/<beta_version>/ncsnr.nii.gz``
    (:meth:`NSDLayout.ncsnr`), computed by the NSD authors from all sessions with betas
    z-scored per session. For ``space='fsaverage'`` it reads ``{lh,rh}.ncsnr.mgh`` in the
    same folder (path UNCONFIRMED). To turn it into a noise ceiling (percent of variance),
    use ``braindecode_suite.models.compute_noise_ceiling(ncsnr, n_repeats)``
    (``NC = 100 ncsnr² / (ncsnr² + 1/n)``); :func:`braindecode_suite.models.compute_ncsnr`
    computes ncsnr from loaded trials instead.

    Parameters
    ----------
    data_dir : str | PathLike
        NSD bucket root (see :class:`NSDLayout`).
    subject : int
        1–8.
    voxel_ijk : array-like of int
        Volume spaces: shape (n_voxels, 3), the grid indices ``trials.info['voxel_ijk']``
        of :func:`load_nsd`. ``'fsaverage'``: shape (n_voxels,), the vertex indices
        ``trials.info['vertex_index']`` (lh then rh, rh offset by the lh vertex count).
    space, beta_version : str
        See :class:`NSDLayout`; the same as given to :func:`load_nsd`.

    Returns
    -------
    ncsnr : ndarray of float64, shape (n_voxels,)
        In the order of ``voxel_ijk``.
    """
    layout = NSDLayout(data_dir, subject, space=space, beta_version=beta_version)
    if space == "fsaverage":
        idx = np.asarray(voxel_ijk)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise BadInputError(
                "voxel_ijk must be a 1-D integer array of vertex indices for space="
                f"'fsaverage' (trials.info['vertex_index']), got {idx.dtype} {idx.shape}."
            )
        maps = [
            _read_surface(_require(layout.ncsnr(h), f"{h} ncsnr"), "ncsnr") for h in HEMISPHERES
        ]
        values = np.concatenate(maps)
        if idx.size and (idx.min() < 0 or idx.max() >= len(values)):
            raise BadInputError(
                f"voxel_ijk holds vertex indices outside [0, {len(values) - 1}] (lh "
                f"{len(maps[0])} + rh {len(maps[1])} vertices), got min {int(idx.min())}, "
                f"max {int(idx.max())}."
            )
        return values[idx].astype(np.float64)
    import nibabel as nib

    ijk = _check_ijk(voxel_ijk)
    path = _require(layout.ncsnr(), "ncsnr")
    try:
        data = np.asarray(nib.load(path).dataobj)
    except Exception as err:  # nibabel raises several types for corrupt files
        raise BadInputError(f"Could not read {str(path)!r} as NIfTI: {err}") from err
    data = data[..., 0] if data.ndim == 4 and data.shape[3] == 1 else data
    if data.ndim != 3:
        raise BadInputError(f"ncsnr {str(path)!r} must be a 3-D volume, got shape {data.shape}.")
    if len(ijk) and ((ijk < 0).any() or (ijk.max(axis=0) >= data.shape).any()):
        raise BadInputError(
            f"voxel_ijk does not fit {str(path)!r} of shape {data.shape} (max index "
            f"{ijk.max(axis=0).tolist()}); pass the voxel_ijk of the same subject and space."
        )
    return data[tuple(ijk.T)].astype(np.float64)


# ----------------------------------------------------------------------------- captions
#: Columns :func:`read_nsd_stim_info` requires (the file has more, see DATASET_FORMATS §1).
STIM_INFO_REQUIRED = ("cocoId", "cocoSplit")

_HOW_TO_GET_CAPTIONS = (
    "The caption files are the COCO 2017 originals (captions_train2017.json, "
    "captions_val2017.json): copy them from s3://natural-scenes-dataset/nsddata_stimuli/"
    "stimuli/nsd/annotations/ (the location commonly used inside the NSD bucket) or take "
    "them from COCO's annotations_trainval2017.zip (cocodataset.org), and pass their "
    "folder or the files as annotations=..."
)


def read_nsd_stim_info(path):
    """Read ``nsd_stim_info_merged.csv``: COCO id, split and crop of every 73k image.

    Parameters
    ----------
    path : str | PathLike
        ``nsddata/experiments/nsd/nsd_stim_info_merged.csv`` (see
        :attr:`NSDLayout.stim_info`).

    Returns
    -------
    info : pandas.DataFrame
        One row per image, indexed by the **0-based** 73k id (index name ``nsdId``; the
        file's unnamed first column and its ``nsdId`` column, which must agree, become
        the index). Columns as in the file: ``cocoId`` (int), ``cocoSplit``
        (``'train2017'``/``'val2017'``), ``cropBox`` (the string ``"(top, bottom, left,
        right)"``: fractions cut from each side of the COCO image), ``loss``,
        ``flagged``, ``BOLD5000``, ``shared1000``, ``subjectN`` and
        ``subjectN_rep{0,1,2}`` (1-based global trial number, 0 = not shown), as
        present. Only ``cocoId`` and ``cocoSplit`` are required.
    """
    import pandas as pd

    path = _require(check_path("path", path, must_exist=False), "stimulus info CSV")
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError) as err:  # ParserError is a ValueError
        raise BadInputError(f"Could not read {str(path)!r} as CSV: {err}") from err
    cols = [str(c) for c in df.columns]
    missing = [c for c in STIM_INFO_REQUIRED if c not in cols]
    if missing:
        raise BadInputError(
            f"{str(path)!r} lacks the column(s) {missing} (found: {cols[:12]}); expected "
            f"NSD's nsd_stim_info_merged.csv with columns {list(STIM_INFO_REQUIRED)} and more."
        )
    unnamed = cols[0].startswith("Unnamed: 0")
    if "nsdId" in cols:
        ids = df["nsdId"]
        if unnamed and not np.array_equal(ids.to_numpy(), df.iloc[:, 0].to_numpy()):
            raise BadInputError(
                f"{str(path)!r}: the nsdId column differs from the unnamed first (index) "
                "column; both are the 0-based 73k id in NSD's file."
            )
    elif unnamed:
        ids = df.iloc[:, 0]
    else:
        raise BadInputError(
            f"{str(path)!r} has neither an nsdId column nor an unnamed first index column, "
            "so its rows cannot be matched to 73k ids."
        )
    ids = ids.to_numpy()
    if len(ids) and (ids.dtype.kind not in "iu" or ids.min() < 0 or len(set(ids)) != len(ids)):
        raise BadInputError(
            f"{str(path)!r}: nsdId must be unique integers >= 0 (0-based 73k ids), got "
            f"dtype {ids.dtype}, e.g. {ids[:3].tolist()}."
        )
    if len(df) and df["cocoId"].dtype.kind not in "iu":
        raise BadInputError(
            f"{str(path)!r}: cocoId must be integers for every row, got dtype "
            f"{df['cocoId'].dtype} (empty cells?)."
        )
    drop = [c for c in (df.columns[0] if unnamed else None, "nsdId") if c in df.columns]
    df = df.drop(columns=drop)
    df.index = pd.Index(ids.astype(np.int64), name="nsdId")
    df["cocoSplit"] = df["cocoSplit"].astype(str)
    return df


def _caption_files(annotations, default_dir: Path, splits: set[str]) -> list[Path]:
    """The caption files to read: those of ``splits`` when a folder has them all."""
    if annotations is None or isinstance(annotations, (str, os.PathLike)):
        folder = default_dir if annotations is None else Path(annotations).expanduser()
        if annotations is not None and folder.is_file():
            return [folder]
        if not folder.is_dir():
            raise BadInputError(
                f"annotations: caption folder {str(folder)!r} does not exist. "
                f"{_HOW_TO_GET_CAPTIONS}"
            )
        files = sorted(folder.glob("captions_*.json"))
        if not files:
            raise BadInputError(
                f"annotations: no captions_*.json in {str(folder)!r}. {_HOW_TO_GET_CAPTIONS}"
            )
        by_split = {f.name[len("captions_") : -len(".json")]: f for f in files}
        if splits <= set(by_split):  # read only the splits needed (train2017 is ~90 MB)
            return [by_split[s] for s in sorted(splits)]
        return files
    if isinstance(annotations, (bytes, dict)) or not hasattr(annotations, "__iter__"):
        raise BadInputError(
            "annotations must be None, a folder or a list of caption files, got "
            f"{type(annotations).__name__}."
        )
    files = [
        check_path("annotations", f, kind="file", hint=_HOW_TO_GET_CAPTIONS) for f in annotations
    ]
    if not files:
        raise BadInputError(f"annotations is an empty list. {_HOW_TO_GET_CAPTIONS}")
    return files


def read_nsd_captions(data_dir, ids73k, *, annotations=None) -> list[list[str]]:
    """COCO captions of NSD images, in the order of ``ids73k``.

    Maps each 0-based 73k id to its COCO image through ``nsd_stim_info_merged.csv``
    (:func:`read_nsd_stim_info`), then reads the COCO caption files once each
    (:func:`~braindecode_suite.datasets.coco.read_coco_captions`).

    Parameters
    ----------
    data_dir : str | PathLike
        NSD bucket root (the folder holding ``nsddata/``).
    ids73k : array-like of int, shape (n,)
        **0-based** 73k ids (``Trials.stimulus_ids``, imgBrick rows); repeats allowed.
    annotations : None | str | PathLike | sequence of str | PathLike
        Caption files in COCO format. None = ``data_dir /
        nsddata_stimuli/stimuli/nsd/annotations`` (:attr:`NSDLayout.annotations_dir`),
        the location commonly used inside the NSD bucket; its files are the COCO 2017
        originals ``captions_train2017.json`` and ``captions_val2017.json``. A folder
        means its ``captions_*.json`` (only ``captions_<cocoSplit>.json`` of the splits
        needed when the folder has all of them); a file or a list means those files.

    Returns
    -------
    captions : list of list of str, length n
        The image's COCO captions (about five) in annotation-id order, stripped. They
        describe the full COCO image; NSD shows a square crop of it.
    """
    layout = NSDLayout(data_dir, 1)
    info = read_nsd_stim_info(layout.stim_info)
    ids = np.asarray(ids73k)
    if ids.ndim > 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise BadInputError(
            f"ids73k must be a 1-D sequence of integers (0-based 73k ids), got dtype "
            f"{ids.dtype} and shape {ids.shape}."
        )
    ids = ids.astype(np.int64).reshape(-1)
    known = np.isin(ids, info.index.to_numpy())
    if not known.all():
        bad = ids[~known]
        raise BadInputError(
            f"ids73k holds {len(bad)} id(s) not in {str(layout.stim_info)!r} (e.g. "
            f"{bad[:5].tolist()}); ids are 0-based, in [{info.index.min()}, "
            f"{info.index.max()}]."
        )
    rows = info.loc[ids]
    coco = rows["cocoId"].to_numpy(np.int64)
    files = _caption_files(annotations, layout.annotations_dir, set(rows["cocoSplit"]))
    found = _collect_captions(files, {int(c) for c in coco})
    lacking = np.array([int(c) not in found for c in coco], dtype=bool)
    if lacking.any():
        nsd_missing = sorted({int(i) for i in ids[lacking]})
        coco_missing = sorted({int(c) for c in coco[lacking]})
        splits = sorted(set(rows["cocoSplit"].to_numpy()[lacking]))
        raise BadInputError(
            f"ids73k: {_missing_message(nsd_missing)} have no caption (COCO ids "
            f"{coco_missing[:5]}, split(s) {splits}) in {[str(f) for f in files]}. "
            f"{_HOW_TO_GET_CAPTIONS}"
        )
    return [list(found[int(c)]) for c in coco]
