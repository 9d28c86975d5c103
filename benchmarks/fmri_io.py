"""Benchmark NSD beta loading: ``load_nsd`` against the whole-volume reference loop.

Generates ONE full-size NSD session of subject 1 in the native 1.8 mm layout: grid
81 × 104 × 83, 750 trials, int16 (percent signal change × 300, zero outside an ellipsoid
brain mask), as ``betas_session01.nii.gz`` (nibabel, gzip level 1 to keep generation short)
and as the ``.hdf5`` twin (h5py view (750, Z, Y, X), chunks (750, 1, 1, 1) as NSD's MATLAB
[1 1 1 750]; uncompressed), an ``nsdgeneral`` ROI of 15,724 voxels (subject 1's count) and
``nsd_expdesign.mat``, into ``--workdir`` (reused when it holds the same settings).

Then, each in a fresh process with the files already in the page cache, it times and
measures the peak memory (the process's peak RSS during the call minus its RSS just before:
Linux ``VmHWM`` after resetting it, else a psutil sampling thread) of

- ``load_nsd(root, 1, sessions=[1])`` on the NIfTI and on the HDF5 file, and
- the reference loop research repos use: ``nib.load(path).get_fdata()`` of the whole 4-D
  volume then ``data[mask]``, and for HDF5 ``h5py`` reading all of ``/betas`` then masking;
  both divided by 300.

It prints one table (seconds, peak MiB, ratios to the reference of the same format) and the
agreement (max |diff|) of the masked arrays.

    nice -n 10 python benchmarks/fmri_io.py --workdir /tmp/nsd_io            # full size
    python benchmarks/fmri_io.py --trials 50 --workdir /tmp/nsd_io_small     # quick run

Full size needs about 1 GB of disk per format and about 6 GB of free memory (the reference
``get_fdata`` alone holds 4.2 GB of float64).
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from braindecode_suite.datasets.nsd import NSDLayout
from braindecode_suite.utils.io import atomic_path, write_json_atomic

GRID = (81, 104, 83)  # subject 1, func1pt8mm
AFFINE = np.array([[1.8, 0, 0, -72.0], [0, 1.8, 0, -108.0], [0, 0, 1.8, -72.0], [0, 0, 0, 1.0]])
SETTINGS_FILE = "fmri_io_settings.json"


# ----------------------------------------------------------------------------- data
def _brain_and_roi(n_roi: int) -> np.ndarray:
    """ROI volume as NSD's: -1 outside the brain, 0 in the brain, 1 in nsdgeneral."""
    axes = [(np.arange(n) - (n - 1) / 2) / (0.45 * n) for n in GRID]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    brain = x**2 + y**2 + z**2 <= 1
    if n_roi > brain.sum():
        raise SystemExit(f"--roi-voxels {n_roi} exceeds the {int(brain.sum())} brain voxels")
    # a posterior blob (LPI: small y index = posterior): the n_roi brain voxels nearest
    d = x**2 + 0.5 * (y + 0.6) ** 2 + (z + 0.1) ** 2
    d[~brain] = np.inf
    roi = np.where(brain, 0, -1).astype(np.int16)
    roi.flat[np.argsort(d, axis=None)[:n_roi]] = 1
    return roi


def _save_nifti_gz(data: np.ndarray, path: Path, level: int = 1) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, AFFINE)
    img.set_data_dtype(data.dtype)
    with atomic_path(path) as tmp, gzip.open(tmp, "wb", compresslevel=level) as gz:
        img.to_file_map({"image": nib.FileHolder(fileobj=gz)})


def _write_expdesign(path: Path, rng) -> None:
    import scipy.io

    n_images = 10000
    subjectim = np.stack([rng.permutation(73000)[:n_images] + 1 for _ in range(8)])
    subjectim[:, :1000] = subjectim[0, :1000]  # the shared images, same for all
    design = {
        "masterordering": rng.integers(1, n_images + 1, (1, 30000)).astype(float),
        "subjectim": subjectim.astype(float),
        "sharedix": subjectim[:1, :1000].astype(float),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        scipy.io.savemat(f, design)


def generate(workdir: Path, n_trials: int, n_roi: int, seed: int = 0) -> dict[str, Path]:
    """Write (or reuse) the NIfTI and HDF5 NSD trees; return their roots."""
    import h5py

    settings = {"grid": list(GRID), "trials": n_trials, "roi_voxels": n_roi, "seed": seed}
    roots = {"nifti": workdir / "nifti", "hdf5": workdir / "hdf5"}
    lay = {k: NSDLayout(r, 1) for k, r in roots.items()}
    files = [lay["nifti"].betas(1), lay["hdf5"].betas(1, ".hdf5")]
    files += [lay[k].roi() for k in lay] + [lay[k].expdesign for k in lay]
    marker = workdir / SETTINGS_FILE
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        if all(p.is_file() for p in files):
            print(f"reusing the session in {workdir}")
            return roots
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    roi = _brain_and_roi(n_roi)
    brain = roi >= 0
    # F order: each trial's volume is contiguous, as nibabel writes it; .T is then the
    # C-contiguous h5py view (n, Z, Y, X).
    betas = np.zeros((*GRID, n_trials), dtype=np.int16, order="F")
    flat = betas.reshape(-1, n_trials, order="F")  # a view: (n_grid_voxels, n_trials)
    assert np.shares_memory(flat, betas)
    idx = np.flatnonzero(brain.reshape(-1, order="F"))
    for ts in range(0, n_trials, 50):
        t1 = min(n_trials, ts + 50)
        psc = rng.standard_normal((len(idx), t1 - ts), dtype=np.float32) * 2.0  # % change
        flat[idx, ts:t1] = np.clip(np.round(psc * 300), -32768, 32767).astype(np.int16)
    for layout in lay.values():
        _save_nifti_gz(roi, layout.roi())
        _write_expdesign(layout.expdesign, np.random.default_rng(seed + 1))
    _save_nifti_gz(betas, lay["nifti"].betas(1))
    with atomic_path(lay["hdf5"].betas(1, ".hdf5")) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("betas", data=betas.T, chunks=(n_trials, 1, 1, 1))
    write_json_atomic(marker, settings)
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB" for p in files[:2])
    print(f"generated one session in {time.perf_counter() - t0:.1f} s ({sizes})")
    return roots


# ----------------------------------------------------------------------------- methods
def _load_nsd(root: str) -> np.ndarray:
    from braindecode_suite.datasets import load_nsd

    return load_nsd(root, 1, sessions=[1], verbose="warning").X


def _reference_nifti(root: str) -> np.ndarray:
    import nibabel as nib

    layout = NSDLayout(root, 1)
    mask = np.asarray(nib.load(layout.roi()).dataobj) > 0
    data = nib.load(layout.betas(1)).get_fdata()  # float64 (X, Y, Z, n)
    return data[mask].T / 300


def _reference_hdf5(root: str) -> np.ndarray:
    import h5py
    import nibabel as nib

    layout = NSDLayout(root, 1)
    mask = np.asarray(nib.load(layout.roi()).dataobj) > 0
    with h5py.File(layout.betas(1, ".hdf5"), "r") as f:
        data = f["betas"][()]  # int16 (n, Z, Y, X)
    i, j, k = np.nonzero(mask)  # the voxel order of data[mask] on the NIfTI
    return data[:, k, j, i] / 300


class _PeakRSS:
    """Peak resident memory of this process inside a ``with`` block, in bytes above its start.

    Linux: reset the kernel's high-water mark (``/proc/self/clear_refs`` ← 5) and read
    ``VmHWM`` afterwards, which misses nothing. Elsewhere: a psutil thread samples RSS
    every millisecond.
    """

    def __enter__(self):
        import threading

        import psutil

        self._proc = psutil.Process()
        self.start = self._proc.memory_info().rss
        self._peak = self.start
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self._kernel = True
        except OSError:
            self._kernel = False
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        if self._kernel:
            status = Path("/proc/self/status").read_text().splitlines()
            hwm = next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:"))
            self._peak = hwm * 1024  # kB
        else:
            self._stop.set()
            self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)
        self.peak = self._peak - self.start
        self.method = "VmHWM" if self._kernel else "psutil sampling"


def _measure(kind: str, fmt: str, root: str) -> tuple[float, float, str, np.ndarray]:
    """Run one method in this (fresh) process: seconds, peak MiB above the start, result."""
    import gc

    import braindecode_suite.datasets  # noqa: F401  (imports outside the measurement)

    references = {"nifti": _reference_nifti, "hdf5": _reference_hdf5}
    fn = _load_nsd if kind == "load_nsd" else references[fmt]
    gc.collect()
    with _PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn(root)
        seconds = time.perf_counter() - t0
    return seconds, mem.peak / 2**20, mem.method, out


def _warm_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 * 2**20):
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=750, help="trials in the session")
    parser.add_argument("--roi-voxels", type=int, default=15724, help="nsdgeneral size")
    parser.add_argument("--workdir", default=None, help="data folder (default: a temp dir)")
    parser.add_argument("--formats", default="nifti,hdf5", help="comma-separated subset")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in ("nifti", "hdf5"):
            raise SystemExit(f"--formats: unknown format {f!r}; use nifti and/or hdf5")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        roots = generate(workdir, args.trials, args.roi_voxels)
        results = {}
        for fmt in formats:
            layout = NSDLayout(roots[fmt], 1)
            _warm_cache(layout.betas(1, ".nii.gz" if fmt == "nifti" else ".hdf5"))
            for kind in ("reference", "load_nsd"):
                # a fresh process each, so one method's heap does not carry into the next
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                    results[fmt, kind] = pool.submit(_measure, kind, fmt, str(roots[fmt])).result()

    n_vox = args.roi_voxels
    print(
        f"one NSD session: grid {GRID}, {args.trials} trials, int16; ROI {n_vox} voxels "
        f"(result {args.trials} x {n_vox} float, {args.trials * n_vox * 4 / 2**20:.0f} MiB "
        "as float32)"
    )
    header = (
        f"{'format':<8}{'method':<44}{'seconds':>9}{'peak MiB':>10}{'time/ref':>10}{'mem/ref':>9}"
    )
    print(header)
    print("-" * len(header))
    names = {
        ("nifti", "reference"): "nib.load().get_fdata() + data[mask] / 300",
        ("nifti", "load_nsd"): "load_nsd (dataobj, 50-trial slabs)",
        ("hdf5", "reference"): "h5py read all + mask / 300",
        ("hdf5", "load_nsd"): "load_nsd (h5py, 5-slice z slabs)",
    }
    for fmt in formats:
        ref_s, ref_mb = results[fmt, "reference"][:2]
        for kind in ("reference", "load_nsd"):
            s, mb = results[fmt, kind][:2]
            print(
                f"{fmt:<8}{names[fmt, kind]:<44}{s:>9.2f}{mb:>10.0f}{s / ref_s:>9.2f}x"
                f"{mb / ref_mb:>8.3f}x"
            )
    print(f"peak memory: {results[formats[0], 'load_nsd'][2]}, in a fresh process per method")
    for fmt in formats:
        ref, got = results[fmt, "reference"][3], results[fmt, "load_nsd"][3]
        assert got.shape == ref.shape, (got.shape, ref.shape)
        print(
            f"agreement {fmt}: max |load_nsd - reference| = {np.max(np.abs(got - ref)):.2e} "
            f"(percent signal change; load_nsd is float32, reference float64)"
        )
    if len(formats) == 2:
        a, b = results["nifti", "load_nsd"][3], results["hdf5", "load_nsd"][3]
        print(f"agreement load_nsd nifti vs hdf5: max |diff| = {np.max(np.abs(a - b)):.2e}")


if __name__ == "__main__":
    main()
