"""Small generated BOLD5000 and THINGS-fMRI datasets in the datasets' own file layouts.

Builders return the generated arrays so that tests can check what the adapters read
against them (and against nibabel / pandas reading the written files directly).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

GRID = (5, 6, 7)  # unequal on purpose
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
BOLD5000_ROI_NAMES = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")


def save_nifti(data: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, affine)
    img.set_data_dtype(data.dtype)
    nib.save(img, path)
    return path


def _brainmask(rng) -> np.ndarray:
    mask = np.zeros(GRID, dtype=np.uint8)
    mask[1:4, 1:5, 1:6] = 1
    mask[2, 2, 2] = 0
    return mask


# ----------------------------------------------------------------------------- BOLD5000
def bold5000_names(n_trials: int, rng) -> list[str]:
    """Image names in presentation order: 3 images shown 4×, 1 shown 3×, the rest once."""
    repeated = ["COCO_train2014_000000000036.jpg", "n01440764_10110.JPEG", "airplanecabin1.jpg"]
    names = repeated * 4 + ["rep_homeoffice7.jpg"] * 3
    k = 0
    while len(names) < n_trials:
        kind = k % 3
        if kind == 0:
            names.append(f"COCO_train2014_{100 + k:012d}.jpg")
        elif kind == 1:
            names.append(f"n{2000000 + k:08d}_{k}.JPEG")
        else:
            names.append(f"scene{k}.jpg")
        k += 1
    rng.shuffle(names)
    return names


def make_bold5000(
    root: Path,
    subject: int = 1,
    *,
    session_trials=(74, 37, 74),
    subdir: str = "",
    spelling: str = "TYPED",
    quirk_names: bool = False,
    nan_voxel: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict:
    """Write one subject's Release 2.0 files; return what was written.

    ``quirk_names`` writes the CSI2/CSI3 ROI spellings (``LO``, ``RHRRSC``).
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / subdir if subdir else Path(root)
    csi = f"CSI{subject}"
    mask = _brainmask(rng)
    save_nifti(mask, folder / f"{csi}_brainmask.nii.gz")
    rois = {}
    for r, name in enumerate(BOLD5000_ROI_NAMES):
        for h, hemi in enumerate(("LH", "RH")):
            roi = np.zeros(GRID, dtype=np.uint8)
            roi[1 + h * 2, 1 + (r % 4), 1 : 3 + r % 3] = 1
            stem = hemi + name
            if quirk_names:
                stem = {"LHLOC": "LHLO", "RHLOC": "RHLO", "RHRSC": "RHRRSC"}.get(stem, stem)
            save_nifti(roi, folder / f"sub-{csi}_mask-{stem}.nii.gz")
            rois[(hemi, name)] = roi.astype(bool)
    names = bold5000_names(sum(session_trials), rng)
    (folder / f"{csi}_imgnames.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    betas = {}
    for s, n in enumerate(session_trials, start=1):
        b = (rng.normal(0.5, 2.0, (*GRID, n)) + rng.normal(0, 3, GRID)[..., None]).astype(
            np.float32
        )
        if nan_voxel is not None:
            b[nan_voxel][n // 2] = np.nan
        betas[s] = b
        fname = f"{csi}_GLMbetas-{spelling}-FITHRF-GLMDENOISE-RR_ses-{s:02d}.nii.gz"
        save_nifti(b, folder / fname)
    return {"mask": mask.astype(bool), "rois": rois, "names": names, "betas": betas}


# ----------------------------------------------------------------------------- THINGS-fMRI
def make_things_fmri(
    root: Path,
    subject: int = 1,
    *,
    n_sessions: int = 3,
    n_runs: int = 2,
    n_train_per_run: int = 4,
    n_test_per_session: int = 2,
    n_catch_per_run: int = 1,
    nan_voxel: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> dict:
    """Write both forms (table and volume) of one subject from the same generated betas.

    Test images are shown once per session (in run 1), train images once overall; catch
    trials are in the volumes and conditions files only. Table rows are the brain-mask
    voxels in C order (as ``nilearn.masking.unmask`` expects), columns the non-catch trials
    in session/run/volume order.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    sub = f"sub-{subject:02d}"
    mask = _brainmask(rng)
    save_nifti(mask, root / "brainmasks" / f"{sub}_space-T1w_brainmask.nii.gz")
    concepts = ["dog", "mango", "chair", "boat", "piano", "tree"]
    test_images = [f"{concepts[i % 6]}/{concepts[i % 6]}_{90 + i:02d}s.jpg"
                   for i in range(n_test_per_session)]  # fmt: skip
    k = 0
    volumes, conditions, trials = {}, {}, []
    for s in range(1, n_sessions + 1):
        for r in range(1, n_runs + 1):
            files = []
            for _ in range(n_train_per_run):
                c = concepts[k % 6]
                files.append(f"{c}/{c}_{k:02d}s.jpg")
                k += 1
            if r == 1:
                files += test_images
            files += [f"catch{s * 10 + r + i:03d}.jpg" for i in range(n_catch_per_run)]
            order = rng.permutation(len(files))
            files = [files[i] for i in order]
            vol = rng.normal(0, 1.5, (*GRID, len(files))).astype(np.float32)
            if nan_voxel is not None:
                vol[nan_voxel][0] = np.nan
            stem = (
                root
                / "betas_vol"
                / sub
                / f"ses-things{s:02d}"
                / f"{sub}_ses-things{s:02d}_run-{r:02d}"
            )
            save_nifti(vol, Path(f"{stem}_betas.nii.gz"))
            pd.DataFrame({"image_filename": files}).to_csv(f"{stem}_conditions.tsv", sep="\t")
            volumes[(s, r)], conditions[(s, r)] = vol, files
            for v, f in enumerate(files):
                if not f.startswith("catch"):
                    trials.append((s, r, v, f))

    ijk = np.argwhere(mask)
    table_dir = root / "betas_csv"
    table_dir.mkdir(parents=True, exist_ok=True)
    values = np.stack([volumes[(s, r)][tuple(ijk.T)][:, v] for s, r, v, _ in trials], axis=1)
    voxel_id = 1000 + np.ravel_multi_index(tuple(ijk.T), GRID)
    responses = pd.DataFrame(values, columns=range(len(trials)))
    responses.insert(0, "voxel_id", voxel_id)
    with warnings.catch_warnings():  # mixed str/int column names are pickled, as in the real file
        warnings.simplefilter("ignore")
        responses.to_hdf(table_dir / f"{sub}_ResponseData.h5", key="ResponseData", mode="w")
    test_names = {Path(t).name for t in test_images}
    stim = pd.DataFrame(
        {
            "subject_id": subject,
            "trial_type": ["test" if Path(f).name in test_names else "train" for *_, f in trials],
            "session": [t[0] for t in trials],
            "run": [t[1] for t in trials],
            "trial_id": np.arange(len(trials)),
            "stimulus": [Path(f).name for *_, f in trials],
            "concept": [Path(f).parent.name for *_, f in trials],
        }
    )
    stim.to_csv(table_dir / f"{sub}_StimulusMetadata.csv", index=False)
    v1 = (ijk[:, 0] == 1).astype(np.int64)
    lffa = ((ijk[:, 0] == 2) & (ijk[:, 1] < 3)).astype(np.int64)
    rffa = ((ijk[:, 0] == 3) & (ijk[:, 1] >= 3)).astype(np.int64)
    voxels = pd.DataFrame(
        {
            "voxel_id": voxel_id,
            "voxel_x": ijk[:, 0],
            "voxel_y": ijk[:, 1],
            "voxel_z": ijk[:, 2],
            "nc_testset": rng.uniform(0, 50, len(ijk)),
            "V1": v1,
            "lFFA": lffa,
            "rFFA": rffa,
        }
    )
    voxels.to_csv(table_dir / f"{sub}_VoxelMetadata.csv", index=False)
    return {
        "mask": mask.astype(bool),
        "volumes": volumes,
        "conditions": conditions,
        "trials": trials,
        "stim": stim,
        "voxels": voxels,
        "values": values,
        "test_images": sorted(test_names),
    }
