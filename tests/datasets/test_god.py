"""GOD adapter (bdpy BData HDF5) on generated files in the published layout."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from braindecode_suite.datasets import (
    god_stimulus_name,
    load_god,
    read_bdata,
    read_god_image_features,
    read_god_stimulus_table,
)
from braindecode_suite.utils.validation import BadInputError

from ._god_fixture import (
    N_VOXELS,
    ROIS,
    TEST_IMAGES,
    TRAIN_IMAGES,
    float_id,
    make_god_subject,
    make_image_features,
    write_bdata,
    write_stimulus_tables,
)

NAN = np.nan
# A metadata matrix worked by hand: 3 keys × 6 columns, 1 = member, NaN = not.
HAND_KEYS = ["ROI_A", "ROI_B", "Label", "voxel_x"]
HAND_VALUES = np.array(
    [
        [1, NAN, 1, NAN, NAN, NAN],  # ROI_A: columns 0, 2
        [NAN, 1, 1, 1, NAN, NAN],  # ROI_B: columns 1, 2, 3
        [NAN, NAN, NAN, NAN, 1, NAN],  # Label: column 4
        [-3, 5, 7, 9, NAN, NAN],  # voxel_x: a value per voxel column
    ]
)
HAND_DATA = np.arange(12, dtype=float).reshape(2, 6)


@pytest.fixture
def god_dir(tmp_path):
    truth = {s: make_god_subject(tmp_path / f"Subject{s}.h5", seed=s) for s in (1, 2)}
    return tmp_path, truth


@pytest.mark.parametrize("legacy", [False, True])
def test_read_bdata_selects_columns_of_the_hand_matrix(tmp_path, legacy):
    path = write_bdata(tmp_path / "hand.h5", HAND_DATA, HAND_KEYS, HAND_VALUES, legacy=legacy)
    b = read_bdata(path)
    assert b.keys == HAND_KEYS
    assert b.shape == (2, 6)
    np.testing.assert_array_equal(b.select("ROI_A"), HAND_DATA[:, [0, 2]])
    np.testing.assert_array_equal(b.select("ROI_B"), HAND_DATA[:, [1, 2, 3]])
    np.testing.assert_array_equal(b.get("Label"), [4.0, 10.0])
    np.testing.assert_array_equal(b.get_metadata("voxel_x", where="ROI_B"), [5, 7, 9])
    np.testing.assert_array_equal(b.columns("ROI_A"), [1, 0, 1, 0, 0, 0])
    assert b.descriptions[0] == "ROI_A description"


def test_read_bdata_agrees_with_bdpy(tmp_path):
    bdpy = pytest.importorskip("bdpy")  # independent reference when installed
    path = write_bdata(tmp_path / "hand.h5", HAND_DATA, HAND_KEYS, HAND_VALUES)
    ref = bdpy.BData(str(path))
    ours = read_bdata(path)
    for key in ("ROI_A", "ROI_B"):
        np.testing.assert_array_equal(ours.select(key), ref.select(key))
    np.testing.assert_array_equal(ours.get("Label"), ref.select("Label").ravel())


def test_bdata_bad_input(tmp_path):
    path = write_bdata(tmp_path / "hand.h5", HAND_DATA, HAND_KEYS, HAND_VALUES)
    b = read_bdata(path)
    with pytest.raises(BadInputError, match=r"'ROI_Z' not found.*Available keys.*ROI_A"):
        b.select("ROI_Z")
    with pytest.raises(BadInputError, match=r"exactly one column, but it marks 3"):
        b.get("ROI_B")
    with pytest.raises(BadInputError, match="does not exist"):
        read_bdata(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(BadInputError, match=r"not a BData file.*found \['x'\]"):
        read_bdata(tmp_path / "other.h5")
    bad = write_bdata(tmp_path / "bad.h5", HAND_DATA, HAND_KEYS, HAND_VALUES[:, :5])
    with pytest.raises(BadInputError, match=r"shape \(4, 5\).*\(4, 6\)"):
        read_bdata(bad)


def test_stimulus_name_rounding_gotcha(tmp_path):
    # the TSV's 1518878.01491 is image 14910, not 1491
    assert god_stimulus_name(1518878.01491) == "n01518878_14910.JPEG"
    assert god_stimulus_name(1518878.010042) == "n01518878_10042.JPEG"
    assert god_stimulus_name(1664990.000065) == "n01664990_65.JPEG"
    train_tsv, test_tsv = write_stimulus_tables(tmp_path)
    assert "1518878.01491\t" in train_tsv.read_text()  # trailing zero really dropped
    table = read_god_stimulus_table(train_tsv)
    assert table["name"].tolist() == [f"n{s:08d}_{i}.JPEG" for s, i in TRAIN_IMAGES]
    assert table["image_index"].tolist() == list(range(1, 7))
    assert table["category_index"].tolist() == [1, 1, 1, 2, 2, 2]
    assert table["synset"].tolist() == [s for s, _ in TRAIN_IMAGES]


def test_stimulus_table_bad_input(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("n01518878_10042\t1518878.010042\t1\n")
    with pytest.raises(BadInputError, match="has 3 column"):
        read_god_stimulus_table(bad)
    bad.write_text("n01518878_1004\t1518878.010042\t1\t1\n")
    with pytest.raises(BadInputError, match=r"does not match id.*n01518878_10042\.JPEG"):
        read_god_stimulus_table(bad)


def _expected_repeat(truth, rows):
    """Repeat index worked out from the schedule: earlier showings in (run, block) order."""
    out = []
    for r in rows:
        key = (truth["run"][r], truth["block"][r])
        same = [
            q
            for q in np.flatnonzero(truth["data_type"] == truth["data_type"][r])
            if truth["stimulus_id"][q] == truth["stimulus_id"][r]
            and (truth["run"][q], truth["block"][q]) < key
        ]
        out.append(len(same))
    return out


@pytest.mark.parametrize("shuffle", [False, True])
def test_load_god_splits_rois_and_repeats(tmp_path, shuffle):
    truth = make_god_subject(tmp_path / "Subject3.h5", seed=3, shuffle=shuffle)
    t = load_god(tmp_path, 3, roi="ROI_V2", split=("training", "test_perception", "test_imagery"))
    rows = np.arange(len(truth["data_type"]))  # every sample, in file order
    np.testing.assert_array_equal(t.X, truth["voxels"][:, ROIS["ROI_V2"]].astype(np.float32))
    assert t.X.dtype == np.float32
    split_of = {1: "train", 2: "test", 3: "imagery"}
    assert t.split.tolist() == [split_of[d] for d in truth["data_type"]]
    assert {s: int((t.split == s).sum()) for s in split_of.values()} == {
        "train": 12,
        "test": 6,
        "imagery": 4,
    }
    np.testing.assert_array_equal(t.run, truth["run"])
    np.testing.assert_array_equal(t.session, 1)
    np.testing.assert_array_equal(t.subject, 3)
    assert t.repeat.tolist() == _expected_repeat(truth, rows)
    # stimulus index → name → the float id of the file
    names = t.info["stimulus_names"]
    for sid, fid in zip(t.stimulus_ids, truth["stimulus_id"], strict=True):
        syn, img = divmod(round(fid * 1e6), 1_000_000)
        assert names[sid] == f"n{syn:08d}_{img}.JPEG"
        assert t.info["category"][sid] == syn
    assert names == sorted(names, key=lambda n: (int(n[1:9]), int(n[10:-5])))
    assert t.info["n_voxels"] == 3
    np.testing.assert_array_equal(t.info["voxel_xyz"], truth["xyz"][ROIS["ROI_V2"]])
    assert t.info["roi"] == "ROI_V2" and t.info["dataset"] == "god"


def test_load_god_default_split_and_roi_alias(god_dir):
    root, truth = god_dir
    t = load_god(root, 2, roi="VC")  # 'VC' → 'ROI_VC'
    keep = np.isin(truth[2]["data_type"], [1, 2])
    np.testing.assert_array_equal(t.X, truth[2]["voxels"][keep].astype(np.float32))
    assert set(t.split) == {"train", "test"}
    assert t.info["roi"] == "ROI_VC" and t.X.shape[1] == N_VOXELS
    only_test = load_god(root, 1, split="test_perception")
    assert set(only_test.split) == {"test"} and len(only_test) == 6
    # the stimulus index does not depend on the split loaded
    full = load_god(root, 1, split=("training", "test_perception"))
    names = full.info["stimulus_names"]
    assert names == only_test.info["stimulus_names"]


def test_load_god_average_test(god_dir):
    root, truth = god_dir
    tr = truth[1]
    t = load_god(root, 1, split=("training", "test_perception"), average_test=True)
    assert (t.split == "train").sum() == 12 and (t.split == "test").sum() == 2
    test = t.select(t.split == "test")
    for sid, x in zip(test.stimulus_ids, test.X, strict=True):
        name = test.info["stimulus_names"][sid]
        syn, img = int(name[1:9]), int(name[10:-5])
        rows = (tr["data_type"] == 2) & np.isclose(tr["stimulus_id"], float_id(syn, img))
        assert rows.sum() == 3
        np.testing.assert_allclose(x, tr["voxels"][rows].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(test.repeat, 0)
    assert sorted(t.info["n_averaged"]["test"].values()) == [3, 3]


def test_load_god_stimulus_tables_order_and_legacy(tmp_path):
    truth = make_god_subject(tmp_path / "Subject1.h5", legacy=True, id_key="Label")
    tables = write_stimulus_tables(tmp_path)
    t = load_god(tmp_path, 1, split=("training", "test_perception"), stimulus_tables=tables)
    expected = [f"n{s:08d}_{i}.JPEG" for s, i in TRAIN_IMAGES + TEST_IMAGES]
    assert t.info["stimulus_names"] == expected  # table order: training then test
    keep = np.isin(truth["data_type"], [1, 2])
    for sid, fid in zip(t.stimulus_ids, truth["stimulus_id"][keep], strict=True):
        assert np.isclose(t.info["stimulus_float_ids"][sid], fid)
    # the trial of image 14910 maps to the table row whose id the TSV wrote as ...01491
    i14910 = expected.index("n01518878_14910.JPEG")
    assert (t.stimulus_ids == i14910).sum() == 2
    assert t.info["files"]["stimulus_tables"] == [str(p) for p in tables]


def test_load_god_bad_input(god_dir):
    root, _ = god_dir
    with pytest.raises(BadInputError, match=r"subject 4 not found.*Subject1\.h5.*figshare"):
        load_god(root, 4)
    with pytest.raises(BadInputError, match=r"'ROI_FFA'.*available ROI keys.*'ROI_V1'"):
        load_god(root, 1, roi="ROI_FFA")
    with pytest.raises(BadInputError, match=r"'split'.*'test'.*'training'"):
        load_god(root, 1, split=("training", "test"))
    with pytest.raises(BadInputError, match="split is empty"):
        load_god(root, 1, split=())
    with pytest.raises(BadInputError, match="subject must be >= 1"):
        load_god(root, 0)
    with pytest.raises(BadInputError, match="does not exist"):
        load_god(root / "nowhere", 1)
    with pytest.raises(BadInputError, match="average_test must be True or False"):
        load_god(root, 1, average_test="yes")


def test_read_god_image_features(tmp_path):
    path = tmp_path / "ImageFeatures.h5"
    truth = make_image_features(path)
    f = read_god_image_features(path, "cnn8")
    np.testing.assert_allclose(f["X"], truth["features"]["cnn8"], rtol=1e-6)
    assert f["X"].dtype == np.float32
    np.testing.assert_array_equal(f["image_id"], truth["meta"][:, 0])
    np.testing.assert_array_equal(f["category"], truth["meta"][:, 1].astype(int))
    np.testing.assert_array_equal(f["feature_type"], [1] * 6 + [2] * 2)
    assert f["stimulus_names"][1] == "n01518878_14910.JPEG"
    assert read_god_image_features(path, "cnn1")["X"].shape == (8, 4)
    with pytest.raises(BadInputError, match=r"'cnn5' not found.*\['cnn1', 'cnn8'\]"):
        read_god_image_features(path, "cnn5")
    with pytest.raises(BadInputError, match="feature key"):
        read_god_image_features(path, "ImageID")
