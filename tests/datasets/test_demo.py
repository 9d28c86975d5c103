"""The demo NSD: NSD layout, round trip through load_nsd, and a forward model that carries
image information."""

from __future__ import annotations

import ast
import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
from PIL import Image

from braindecode_suite.datasets import (
    DEMO_VERSION,
    NSDLayout,
    demo_is_current,
    load_nsd,
    make_demo_nsd,
    read_nsd_captions,
    read_nsd_stim_info,
    read_nsd_stimuli,
)
from braindecode_suite.datasets._photos import PHOTO_CAPTIONS, PHOTO_CATEGORIES, load_photos
from braindecode_suite.utils.validation import BadInputError

SMALL = dict(n_train=40, n_test=6, n_sessions=3, image_size=64, n_voxels_prf=300,
             n_voxels_category=100)  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = make_demo_nsd(tmp_path_factory.mktemp("demo") / "nsd", **SMALL)
    return root, json.loads((root / "demo_truth.json").read_text())


def test_round_trip_matches_truth(demo):
    root, truth = demo
    trials = load_nsd(root, subject=1)
    tt = truth["trials"]
    n = 6 * 3 + 40
    n += (-n) % 3  # padded to a multiple of n_sessions
    assert len(trials) == n == len(tt["id73k"])
    np.testing.assert_array_equal(trials.stimulus_ids, tt["id73k"])
    np.testing.assert_array_equal(trials.session, tt["session"])
    np.testing.assert_array_equal(trials.repeat, tt["repeat"])
    assert (trials.split == "test").tolist() == tt["shared"]
    shared_ids = {m["id73k"] for m in truth["stimuli"] if m["split"] == "test"}
    test = trials.select(trials.split == "test")
    assert set(test.stimulus_ids.tolist()) == shared_ids
    ids, counts = np.unique(test.stimulus_ids, return_counts=True)
    assert len(ids) == 6 and (counts == 3).all()
    assert sorted(test.repeat[test.stimulus_ids == ids[0]].tolist()) == [0, 1, 2]
    assert not set(trials.stimulus_ids[trials.split == "train"]) & shared_ids


def test_betas_read_directly(demo):
    root, _ = demo
    trials = load_nsd(root)
    lay = NSDLayout(root, 1)
    raw = np.asarray(nib.load(lay.betas(2)).dataobj)
    assert raw.dtype == np.int16 and raw.shape[:3] == (22, 26, 20)
    roi = np.asarray(nib.load(lay.roi()).dataobj)
    assert set(np.unique(roi).tolist()) == {-1, 0, 1} and (roi > 0).sum() == 400
    ijk = trials.info["voxel_ijk"]
    n_per = raw.shape[3]
    rows = np.flatnonzero(trials.session == 2)
    assert len(rows) == n_per
    for v in (0, 17, 399):
        i, j, k = ijk[v]
        np.testing.assert_allclose(trials.X[rows, v], raw[i, j, k, :] / 300, rtol=1e-6)
    np.testing.assert_allclose(np.diag(nib.load(lay.betas(1)).affine)[:3], 1.8)
    assert (raw[roi < 0] == 0).all()  # zeroed outside the brain, like NSD


def test_nsd_files(demo):
    root, truth = demo
    lay = NSDLayout(root, 1)
    mat = scipy.io.loadmat(lay.expdesign)
    assert mat["masterordering"].shape == (1, len(truth["trials"]["k10k"]))
    assert mat["subjectim"].shape == (1, 46) and mat["sharedix"].shape == (1, 6)
    assert mat["masterordering"].min() == 1  # 1-based on disk
    subjectim = mat["subjectim"][0].astype(int)
    assert not np.array_equal(subjectim, np.arange(1, 47))  # a permutation, not identity
    np.testing.assert_array_equal(subjectim[:6], mat["sharedix"][0])
    with h5py.File(lay.stimuli) as f:
        assert f["imgBrick"].shape == (46, 64, 64, 3) and f["imgBrick"].dtype == np.uint8
    pngs = sorted((root / "nsddata/stimuli/nsd/shared1000").glob("*.png"))
    assert len(pngs) == 6
    name = pngs[0].name  # sharedKKKK_nsdIIIII.png, both 1-based
    shared_k, id73k = int(name[6:10]), int(name[14:19])
    assert shared_k == 1 and id73k == mat["sharedix"][0][0]
    img = read_nsd_stimuli(lay.stimuli, [id73k - 1])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(pngs[0])), img)
    meta = {m["id73k"]: m for m in truth["stimuli"]}
    assert meta[id73k - 1]["split"] == "test"
    assert {"source", "category", "crop_box", "flip"} <= set(meta[id73k - 1])
    assert (root / "DEMO_README.md").read_text().startswith("# Demo NSD (simulated)")


def test_deterministic_and_no_overwrite(demo, tmp_path):
    root, truth = demo
    again = make_demo_nsd(tmp_path / "again", **SMALL)
    assert json.loads((again / "demo_truth.json").read_text()) == truth
    lay_a, lay_b = NSDLayout(root, 1), NSDLayout(again, 1)
    np.testing.assert_array_equal(
        np.asarray(nib.load(lay_a.betas(1)).dataobj), np.asarray(nib.load(lay_b.betas(1)).dataobj)
    )
    mtime = (again / "demo_truth.json").stat().st_mtime_ns
    assert make_demo_nsd(again, **SMALL) == again
    assert (again / "demo_truth.json").stat().st_mtime_ns == mtime
    other = make_demo_nsd(again, **{**SMALL, "random_state": 1}, overwrite=True)
    assert json.loads((other / "demo_truth.json").read_text())["parameters"]["random_state"] == 1
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(BadInputError, match=r"not a demo build"):
        make_demo_nsd(tmp_path, overwrite=True, **SMALL)
    with pytest.raises(BadInputError, match=r"does not fit the demo brain"):
        make_demo_nsd(tmp_path / "big", n_voxels_prf=9000)


def test_forward_model_carries_image_information(tmp_path):
    from sklearn.linear_model import RidgeCV

    from braindecode_suite.preprocessing import average_repeats, zscore_per_session

    root = make_demo_nsd(tmp_path / "nsd", n_train=240, n_test=24, n_sessions=4, image_size=64,
                         n_voxels_prf=600, n_voxels_category=200)  # fmt: skip
    trials = average_repeats(zscore_per_session(load_nsd(root)), split="test")
    imgs = read_nsd_stimuli(NSDLayout(root, 1).stimuli, trials.stimulus_ids)
    grey = imgs.astype(float).mean(axis=3).reshape(len(imgs), 8, 8, 8, 8).mean(axis=(2, 4))
    Y = grey.reshape(len(imgs), -1)
    train, test = trials.split == "train", trials.split == "test"
    model = RidgeCV(alphas=np.logspace(0, 5, 11)).fit(trials.X[train], Y[train])
    pred = model.predict(trials.X[test])
    r = [np.corrcoef(pred[:, p], Y[test][:, p])[0, 1] for p in range(Y.shape[1])]
    assert np.nanmean(r) > 0.2


def test_photo_captions_cover_every_photo():
    assert set(PHOTO_CAPTIONS) == set(PHOTO_CATEGORIES)
    for name, caps in PHOTO_CAPTIONS.items():
        assert len(caps) == len(set(caps)) == 3, name
        assert all(c == c.strip() and c[0].isupper() and c.endswith(".") for c in caps), name


def test_demo_stim_info(demo):
    root, truth = demo
    assert truth["demo_version"] == DEMO_VERSION and demo_is_current(root)
    info = read_nsd_stim_info(NSDLayout(root, 1).stim_info)
    meta = {m["id73k"]: m for m in truth["stimuli"]}
    assert info.index.tolist() == sorted(meta) == list(range(46))
    np.testing.assert_array_equal(info["cocoId"], 9_000_000 + np.arange(46))
    assert set(info["cocoSplit"]) == {"demo"}
    assert info.index[info["shared1000"]].tolist() == sorted(
        i for i, m in meta.items() if m["split"] == "test"
    )
    # repR = 1-based global trial numbers of the first three showings, 0 = not shown.
    reps = info[["subject1_rep0", "subject1_rep1", "subject1_rep2"]].to_numpy()
    shown: dict[int, list[int]] = {}
    for t, i in enumerate(truth["trials"]["id73k"]):
        shown.setdefault(i, []).append(t + 1)
    for i in range(46):
        expected = (shown.get(i, [])[:3] + [0, 0, 0])[:3]
        assert reps[i].tolist() == expected, i
        assert info.loc[i, "subject1"] == (i in shown)
    # cropBox = (top, bottom, left, right) fractions cut from the source photo.
    shapes = {k: v.shape[:2] for k, v in load_photos().items()}
    for i in (0, 7, 45):
        h, w = shapes[meta[i]["source"]]
        x0, y0, x1, y1 = meta[i]["crop_box"]
        box = ast.literal_eval(info.loc[i, "cropBox"])
        np.testing.assert_allclose(box, [y0 / h, 1 - y1 / h, x0 / w, 1 - x1 / w], atol=1e-6)


def test_demo_captions_follow_source_photo(demo):
    root, truth = demo
    lay = NSDLayout(root, 1)
    coco = json.loads((lay.annotations_dir / "captions_demo.json").read_text())
    assert {im["id"] for im in coco["images"]} == {m["coco_id"] for m in truth["stimuli"]}
    assert len(coco["annotations"]) == 3 * 46
    ids = [m["id73k"] for m in truth["stimuli"]]
    got = read_nsd_captions(root, ids)
    assert got == [list(PHOTO_CAPTIONS[m["source"]]) for m in truth["stimuli"]]
    trials = load_nsd(root)
    by_id = {m["id73k"]: m["source"] for m in truth["stimuli"]}
    first = trials.stimulus_ids[:10]
    for caps, i in zip(read_nsd_captions(root, first), first, strict=True):
        assert caps == list(PHOTO_CAPTIONS[by_id[int(i)]])


def test_old_demo_build_is_rebuilt(demo, tmp_path):
    root, truth = demo
    old = tmp_path / "old"
    shutil.copytree(root, old)
    lay = NSDLayout(old, 1)
    lay.stim_info.unlink()
    shutil.rmtree(lay.annotations_dir)
    old_truth = {k: v for k, v in truth.items() if k != "demo_version"}  # a version-1 build
    (old / "demo_truth.json").write_text(json.dumps(old_truth))
    assert not demo_is_current(old)
    assert make_demo_nsd(old, **SMALL) == old
    assert demo_is_current(old) and lay.stim_info.is_file()
    assert json.loads((old / "demo_truth.json").read_text()) == truth
    assert len(read_nsd_captions(old, [0, 1])) == 2
