"""Write tiny GOD files in the exact bdpy BData HDF5 layout (test fixtures only).

``/dataset`` float64 (n_samples, n_columns); ``/metadata/key`` and
``/metadata/description`` as byte strings; ``/metadata/value`` float64 (n_keys,
n_columns) with 1 where a column belongs to a key and NaN elsewhere (``voxel_x/y/z``
rows hold a coordinate per voxel column) — as bdpy's ``BData.save`` writes them.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

#: Training images: (synset, image number). 1518878 / 14910 is the TSV trailing-zero case.
TRAIN_IMAGES = [(1518878, 10042), (1518878, 14910), (1518878, 65), (1639765, 22407),
                (1639765, 32862), (1639765, 40261)]  # fmt: skip
TEST_IMAGES = [(1443537, 22563), (1621127, 19020)]
N_VOXELS = 9
#: ROI membership of the 9 voxel columns (V2 non-contiguous on purpose).
ROIS = {
    "ROI_V1": [0, 1, 2],
    "ROI_V2": [3, 5, 7],
    "ROI_VC": list(range(N_VOXELS)),
}


def float_id(synset: int, image: int) -> float:
    """The GOD float id ``synset.imageid`` (image number in six decimals)."""
    return synset + image / 1e6


def write_bdata(path, dataset, keys, values, descriptions=None, *, legacy=False):
    """Write a BData file with bdpy's layout (``legacy``: ``dataSet``/``metaData``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptions = descriptions or [f"{k} description" for k in keys]
    ds, md = ("dataSet", "metaData") if legacy else ("dataset", "metadata")
    with h5py.File(path, "w") as f:
        f.create_dataset(f"/{ds}", data=np.asarray(dataset, dtype=np.float64))
        f.create_group(f"/{md}")
        f.create_dataset(f"/{md}/key", data=[k.encode("utf-8") for k in keys])
        f.create_dataset(f"/{md}/description", data=[d.encode("utf-8") for d in descriptions])
        f.create_dataset(f"/{md}/value", data=np.asarray(values, dtype=np.float64))
        f.create_group("/header")
        f.create_group("/vmap")
    return path


def _schedule():
    """Rows (data_type, run, block, synset, image) in acquisition order."""
    rows = []
    # training: runs 1-2, each image once per run (2 showings in all)
    for run in (1, 2):
        for block, (syn, img) in enumerate(TRAIN_IMAGES[::-1] if run == 2 else TRAIN_IMAGES):
            rows.append((1, run, block + 1, syn, img))
    # test perception: runs 1-3, both images per run, order alternating
    for run in (1, 2, 3):
        order = TEST_IMAGES if run % 2 else TEST_IMAGES[::-1]
        for block, (syn, img) in enumerate(order):
            rows.append((2, run, block + 1, syn, img))
    # test imagery: runs 1-2
    for run in (1, 2):
        for block, (syn, img) in enumerate(TEST_IMAGES):
            rows.append((3, run, block + 1, syn, img))
    return rows


def make_god_subject(path, *, seed=0, legacy=False, id_key="stimulus_id", shuffle=False):
    """Write ``Subject{N}.h5``; return the truth (voxel data and per-sample columns).

    Columns: 9 voxels, then DataType, Run, Block, ``id_key``. ``shuffle`` writes the
    samples out of acquisition order (the loader orders repeats by Run/Block).
    """
    rng = np.random.default_rng(seed)
    rows = _schedule()
    if shuffle:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    n = len(rows)
    voxels = rng.normal(size=(n, N_VOXELS)).round(4)
    meta_cols = np.array(
        [(dt, run, block, float_id(syn, img)) for dt, run, block, syn, img in rows]
    )
    dataset = np.hstack([voxels, meta_cols])
    n_cols = dataset.shape[1]
    keys, values = [], []

    def add(key, cols=None, row=None):
        v = np.full(n_cols, np.nan)
        if row is not None:
            v[: len(row)] = row
        else:
            v[cols] = 1
        keys.append(key)
        values.append(v)

    add("VoxelData", list(range(N_VOXELS)))
    for roi, cols in ROIS.items():
        add(roi, cols)
    xyz = rng.integers(-60, 60, size=(N_VOXELS, 3)).astype(float)
    for i, axis in enumerate("xyz"):
        add(f"voxel_{axis}", row=xyz[:, i])
    for j, key in enumerate(("DataType", "Run", "Block", id_key)):
        add(key, [N_VOXELS + j])
    write_bdata(path, dataset, keys, np.vstack(values), legacy=legacy)
    return {
        "voxels": voxels,
        "data_type": meta_cols[:, 0].astype(int),
        "run": meta_cols[:, 1].astype(int),
        "block": meta_cols[:, 2].astype(int),
        "stimulus_id": meta_cols[:, 3],
        "rows": rows,
        "xyz": xyz,
    }


def write_stimulus_tables(folder):
    """Write GOD's two stimulus TSVs (ids printed with trailing zeros dropped)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, images in (("Training", TRAIN_IMAGES), ("Test", TEST_IMAGES)):
        lines, cats = [], {}
        for i, (syn, img) in enumerate(images):
            cat = cats.setdefault(syn, len(cats) + 1)
            # repr() drops trailing zeros, as the published file does: 1518878.01491
            lines.append(f"n{syn:08d}_{img}\t{float_id(syn, img)!r}\t{cat}\t{i + 1}")
        path = folder / f"stimulus_ImageNet{name}.tsv"
        path.write_text("\n".join(lines) + "\n")
        out.append(path)
    return out


def make_image_features(path, *, seed=1):
    """Write an ``ImageFeatures.h5`` BData; return the truth per layer."""
    rng = np.random.default_rng(seed)
    images = [(1, s, i) for s, i in TRAIN_IMAGES] + [(2, s, i) for s, i in TEST_IMAGES]
    n = len(images)
    feats = {"cnn1": rng.normal(size=(n, 4)), "cnn8": rng.normal(size=(n, 3))}
    meta = np.array([(float_id(s, i), s, ft) for ft, s, i in images])
    dataset = np.hstack([meta, feats["cnn1"], feats["cnn8"]])
    n_cols = dataset.shape[1]
    keys, values = [], []
    spans = {"ImageID": [0], "CatID": [1], "FeatureType": [2], "cnn1": [3, 4, 5, 6],
             "cnn8": [7, 8, 9]}  # fmt: skip
    for key, cols in spans.items():
        v = np.full(n_cols, np.nan)
        v[cols] = 1
        keys.append(key)
        values.append(v)
    write_bdata(path, dataset, keys, np.vstack(values))
    return {"features": feats, "meta": meta}
