"""Pairing two folders of images for evaluation."""

import numpy as np
import pytest
from PIL import Image

from braindecode_suite.evaluation.folders import load_image_pairs
from braindecode_suite.utils import BadInputError


def _write(folder, names, size=(12, 10), seed=0, fmt="png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for n in names:
        a = (rng.random((*size, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"{n}.{fmt}")
        out[n] = a
    return out


def test_pairs_by_stem_across_formats(tmp_path):
    pred = _write(tmp_path / "p", ["b", "a", "c"], seed=1)
    gt = _write(tmp_path / "g", ["c", "a", "b"], size=(16, 16), seed=2, fmt="bmp")
    (tmp_path / "p" / "notes.txt").write_text("ignored")
    pairs = load_image_pairs(tmp_path / "p", tmp_path / "g")
    assert pairs.names == ["a", "b", "c"] and len(pairs) == 3
    for i, n in enumerate(pairs.names):
        np.testing.assert_array_equal(pairs.pred[i], pred[n])
        np.testing.assert_array_equal(pairs.gt[i], gt[n])
    assert pairs.pred.shape == (3, 12, 10, 3) and pairs.gt.shape == (3, 16, 16, 3)


def test_pairs_from_csv(tmp_path):
    pred = _write(tmp_path / "p", ["r1", "r2"])
    gt = _write(tmp_path / "g", ["stim_9", "stim_4"], seed=3)
    csv = tmp_path / "pairs.csv"
    csv.write_text("pred,gt\nr2.png,stim_9.png\nr1.png,stim_4.png\n")
    pairs = load_image_pairs(tmp_path / "p", tmp_path / "g", pairs=csv)
    assert pairs.names == ["r2.png", "r1.png"]
    np.testing.assert_array_equal(pairs.pred[0], pred["r2"])
    np.testing.assert_array_equal(pairs.gt[0], gt["stim_9"])


def test_errors(tmp_path):
    _write(tmp_path / "p", ["a", "b", "x"])
    _write(tmp_path / "g", ["a", "b", "y"])
    with pytest.raises(BadInputError, match=r"1 only in pred_dir \(e.g. \['x'\]\).*\['y'\]"):
        load_image_pairs(tmp_path / "p", tmp_path / "g")
    bad = tmp_path / "bad.csv"
    bad.write_text("recon,truth\na.png,a.png\n")
    with pytest.raises(BadInputError, match="'pred' and 'gt' columns"):
        load_image_pairs(tmp_path / "p", tmp_path / "g", pairs=bad)
    bad.write_text("pred,gt\na.png,zzz.png\n")
    with pytest.raises(BadInputError, match="1 listed file"):
        load_image_pairs(tmp_path / "p", tmp_path / "g", pairs=bad)
    _write(tmp_path / "q", ["a"], size=(8, 8))
    _write(tmp_path / "q", ["b"], size=(9, 9))
    _write(tmp_path / "h", ["a", "b"])
    with pytest.raises(BadInputError, match="pred_dir: the images have different sizes"):
        load_image_pairs(tmp_path / "q", tmp_path / "h")
    with pytest.raises(BadInputError, match="pred_dir"):
        load_image_pairs(tmp_path / "nope", tmp_path / "h")
    _write(tmp_path / "one", ["a"])
    _write(tmp_path / "one_g", ["a"])
    with pytest.raises(BadInputError, match="at least 2 image pairs"):
        load_image_pairs(tmp_path / "one", tmp_path / "one_g")


def test_evaluate_folders_identical_and_missing_network(tmp_path):
    from braindecode_suite.evaluation.folders import evaluate_folders

    imgs = _write(tmp_path / "gt", [f"s{i}" for i in range(6)], size=(40, 40), seed=4)
    _write(tmp_path / "recon", [f"s{i}" for i in range(6)], size=(40, 40), seed=4)
    res = evaluate_folders(
        tmp_path / "recon",
        tmp_path / "gt",
        tmp_path / "out",
        metrics=["PixCorr", "SSIM", "Alex2"],
        n_boot=50,
    )
    # identical images: PixCorr and SSIM are 1 by definition
    assert res["PixCorr"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert res["SSIM"]["mean"] == pytest.approx(1.0, abs=1e-6)
    # no AlexNet weights offline: reported missing with the reason, not faked
    assert "missing" in res["Alex2"] and "alexnet" in res["Alex2"]["missing"].lower()
    out = tmp_path / "out"
    for name in ("metrics.json", "table.md", "report.html", "best_median_worst_PixCorr.png"):
        assert (out / name).is_file(), name
    table = (out / "table.md").read_text()
    assert "recon (ours)" in table and "MindEye2" in table
    assert len(imgs) == 6
