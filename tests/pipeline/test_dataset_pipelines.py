"""One pipeline per fMRI dataset, run on generated native-format data (Haxby: the real subject 1).

The shipped YAML files are shrunk (small features, no EfficientNet, few bootstraps) and run
end to end with ``run_pipeline``; the stimulus reader is checked against images whose
pixels are known by construction, and against h5py for NSD's HDF5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from braindecode_suite.datasets import (
    god_stimulus_name,
    image_files_fingerprint,
    locate_stimulus_images,
    read_stimulus_images,
)
from braindecode_suite.pipeline import run_pipeline, validate_pipeline
from braindecode_suite.pipeline._artifacts import load_trials
from braindecode_suite.utils.validation import BadInputError

from ..datasets._fmri_fixtures import make_bold5000, make_things_fmri
from ..datasets._god_fixture import TEST_IMAGES, TRAIN_IMAGES, make_god_subject

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
SMALL = 32  # stimulus image side in the tests


# ----------------------------------------------------------------------------- helpers
def _colour(key: str) -> tuple[int, int, int]:
    """A colour fixed by a stimulus name (so a test can tell which file was read)."""
    h = sum((i + 1) * ord(ch) for i, ch in enumerate(key))
    return (h * 37 % 256, h * 91 % 256, h * 53 % 256)


def _write_image(path: Path, key: str, size=(30, 20)) -> None:
    """A ``size`` (W, H) image: left half the name's colour, right half its complement."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = _colour(key)
    arr[:, w // 2 :] = 255 - np.array(_colour(key), np.uint8)
    Image.fromarray(arr).save(path)


def _shrink(name: str, stage: str, **loader) -> dict:
    """The shipped YAML with small features, no downloads, few bootstraps."""
    raw = yaml.safe_load((PIPELINES / name).read_text())
    raw["stages"][stage].update(image_size=SMALL, **loader)
    raw["stages"]["features"]["extractors"] = {
        "pixels": {"kind": "pixels", "params": {"size": 8}},
        "gabor": {"kind": "gabor", "params": {"size": 32, "grid": 2}},
    }
    raw["stages"]["decode"]["targets"] = ["pixels", "gabor"]
    raw["stages"]["reconstruct"]["output_size"] = SMALL
    raw["stages"]["evaluate"].update(size=SMALL, n_boot=50, networks={})
    return raw


def _check_run(run_dir: Path, n_test: int) -> dict:
    for name in ("metrics.json", "reconstructions.png", "report.html"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["_meta"]["n_test_images"] == n_test
    for key in ("PixCorr", "SSIM"):  # MindEye2's low-level metrics, always computable
        assert math.isfinite(m[key]["mean"]), key
        assert -1 <= m[key]["mean"] <= 1
    # the protocol's network metrics have no weights offline: missing, never a number
    assert "missing" in m["Alex2"]
    assert "decoded_two_way/pixels.pixels" in m
    html = (run_dir / "report.html").read_text()
    assert "REAL recordings" in html
    return m


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture
def bold5000_root(tmp_path):
    root = tmp_path / "bold5000"
    truth = make_bold5000(root, session_trials=(74, 37, 74))
    folder = root / "Scene_Stimuli" / "Presented_Stimuli"
    for name in set(truth["names"]):
        base = name[4:] if name.startswith("rep_") else name  # files have no rep_ prefix
        source = "COCO" if base.startswith("COCO_") else "ImageNet" if base[0] == "n" else "Scene"
        _write_image(folder / source / base, name)
    return root, truth


@pytest.fixture
def things_root(tmp_path):
    root = tmp_path / "things"
    truth = make_things_fmri(root, n_sessions=3, n_runs=2, n_train_per_run=6,
                             n_test_per_session=3)  # fmt: skip
    for files in truth["conditions"].values():
        for f in files:
            if not f.startswith("catch"):  # images/<concept>/<file>
                _write_image(root / "images" / f, Path(f).name)
    return root, truth


@pytest.fixture
def god_root(tmp_path):
    root = tmp_path / "god"
    make_god_subject(root / "Subject1.h5")
    return root


def _god_images(root: Path) -> None:
    for folder, images in (("training", TRAIN_IMAGES), ("test", TEST_IMAGES)):
        for syn, img in images:
            name = god_stimulus_name(syn + img / 1e6)
            _write_image(root / "images" / folder / name, name, size=(24, 36))


# ----------------------------------------------------------------------------- stimuli
def test_image_files_are_read_rgb_squashed_and_in_the_order_asked(tmp_path):
    _write_image(tmp_path / "a.png", "a")  # 30 × 20 RGB
    grey = np.full((10, 40), 77, np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "b.jpg", quality=100)
    stim = {"format": "image_files", "files": [str(tmp_path / "a.png"), str(tmp_path / "b.jpg")],
            "image_size": 16}  # fmt: skip
    out = read_stimulus_images(stim, [1, 0, 1])
    assert out.shape == (3, 16, 16, 3) and out.dtype == np.uint8
    # squashed, not cropped: the left half keeps the name's colour, the right its complement
    np.testing.assert_array_equal(out[1, :, :6], np.broadcast_to(_colour("a"), (16, 6, 3)))
    np.testing.assert_array_equal(out[1, :, -6:], np.broadcast_to(255 - np.array(_colour("a")),
                                                                  (16, 6, 3)))  # fmt: skip
    assert np.abs(out[[0, 2]].astype(int) - 77).max() <= 1  # greyscale → RGB, 3 equal channels
    assert read_stimulus_images(stim, [0], size=8).shape == (1, 8, 8, 3)


def test_nsd_records_read_as_before(tmp_path):
    rng = np.random.default_rng(0)
    brick = rng.integers(0, 256, (6, 12, 10, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "nsd_stimuli.hdf5", "w") as f:
        f["imgBrick"] = brick
    path = str(tmp_path / "nsd_stimuli.hdf5")
    for stim in ({"path": path}, {"format": "nsd_hdf5", "path": path},
                 {"format": "nsd_imgBrick", "path": path}):  # fmt: skip
        np.testing.assert_array_equal(read_stimulus_images(stim, [4, 0, 4]), brick[[4, 0, 4]])
    assert read_stimulus_images({"path": path}, [1], size=20).shape == (1, 20, 20, 3)


def test_stimulus_reader_bad_inputs(tmp_path):
    _write_image(tmp_path / "a.png", "a")
    stim = {"format": "image_files", "files": [str(tmp_path / "a.png"), None],
            "names": ["a.png", "n01_2.JPEG"], "stimuli_dir": str(tmp_path / "images"),
            "image_size": 8, "how_to_get": "Ask the authors."}  # fmt: skip
    with pytest.raises(BadInputError, match=r"1 stimulus image.*id 1: 'n01_2.JPEG'.*Ask the"):
        read_stimulus_images(stim, [0, 1])
    (tmp_path / "a.png").unlink()
    with pytest.raises(BadInputError, match=r"missing: stimulus id 0: '.*a\.png'"):
        read_stimulus_images(stim, [0])
    with pytest.raises(BadInputError, match=r"ids \[5\] are out of range.*ids 0\.\.1"):
        read_stimulus_images(stim, [5])
    with pytest.raises(BadInputError, match="integer stimulus ids"):
        read_stimulus_images(stim, [0.5])
    with pytest.raises(BadInputError, match=r"'format' parameter.*'image_files'.*got 'png'"):
        read_stimulus_images({"format": "png"}, [0])
    with pytest.raises(BadInputError, match="needs 'files'"):
        read_stimulus_images({"format": "image_files"}, [0])
    with pytest.raises(BadInputError, match="size must be >= 1"):
        read_stimulus_images(stim, [0], size=0)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(BadInputError, match=r"Could not read the stimulus image '.*bad\.png'"):
        read_stimulus_images({**stim, "files": [str(tmp_path / "bad.png")]}, [0])
    with pytest.raises(BadInputError, match="'dataset'.*'god'.*got 'nsd'"):
        locate_stimulus_images("nsd", tmp_path, {"stimulus_names": []})
    with pytest.raises(BadInputError, match="no 'stimulus_names'"):
        locate_stimulus_images("god", tmp_path, {})


def test_image_fingerprint_follows_name_size_and_mtime(tmp_path):
    import os

    _write_image(tmp_path / "a.png", "a")
    files = [str(tmp_path / "a.png"), None]
    fp = image_files_fingerprint(files, 32)
    assert image_files_fingerprint(list(files), 32) == fp
    assert image_files_fingerprint(files, 64) != fp  # resized differently
    st = os.stat(tmp_path / "a.png")
    os.utime(tmp_path / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert image_files_fingerprint(files, 32) != fp  # touched


# ----------------------------------------------------------------------------- pipelines
def test_bold5000_pipeline(bold5000_root, tmp_path):
    root, truth = bold5000_root
    raw = _shrink("bold5000_lowlevel.yaml", "fmri")
    config = validate_pipeline(raw, str(PIPELINES / "bold5000_lowlevel.yaml"))
    res = run_pipeline(config, out_dir=tmp_path / "runs", device="cpu", data_dir=root)
    run_dir = res.run_dir
    assert res.executed == ["fmri", "features", "decode", "reconstruct", "evaluate", "report"]
    # 4 images are shown more than once in the fixture (3 × 4 and 1 × 3): the test set
    _check_run(run_dir, n_test=4)
    stim = json.loads((run_dir / "fmri" / "stimuli.json").read_text())
    names = stim["names"]
    assert stim["format"] == "image_files" and stim["n_missing"] == 0
    assert sorted(names) == sorted(set(truth["names"]))
    # each stimulus id points at the file of its own name (rep_ prefix dropped)
    for i in (0, len(names) // 2, len(names) - 1):
        base = names[i][4:] if names[i].startswith("rep_") else names[i]
        assert Path(stim["files"][i]).name == base
        img = read_stimulus_images(stim, [i])[0].astype(int)
        assert np.abs(img[:, :8] - np.array(_colour(names[i]))).max() <= 8  # JPEG, lossy
    trials = load_trials(run_dir / "fmri" / "trials.h5")
    assert (trials.split == "test").sum() == 4  # repeats averaged
    # unchanged inputs: nothing re-runs; a touched image re-runs the data stage onwards
    assert (
        run_pipeline(config, out_dir=tmp_path / "runs", device="cpu", data_dir=root).executed == []
    )
    Path(stim["files"][0]).write_bytes(Path(stim["files"][1]).read_bytes())
    again = run_pipeline(config, out_dir=tmp_path / "runs", device="cpu", data_dir=root)
    assert again.executed[0] == "fmri"


def test_things_fmri_pipeline(things_root, tmp_path):
    root, truth = things_root
    raw = _shrink("things_fmri_lowlevel.yaml", "fmri")
    res = run_pipeline(
        validate_pipeline(raw, "things_fmri_lowlevel.yaml"),
        out_dir=tmp_path / "runs",
        device="cpu",
        data_dir=root,
    )
    _check_run(res.run_dir, n_test=3)
    stim = json.loads((res.run_dir / "fmri" / "stimuli.json").read_text())
    test_names = sorted(stim["names"][i] for i in stim["test_ids"])
    assert test_names == truth["test_images"]
    for i in stim["test_ids"]:  # images/<concept>/<file>
        assert Path(stim["files"][i]).parent.name == stim["concept"][i]


def test_god_pipeline_and_missing_images(god_root, tmp_path):
    raw = _shrink("god_lowlevel.yaml", "fmri")
    config = validate_pipeline(raw, "god_lowlevel.yaml")
    # GOD images are on request: without them the first stage that reads images says so
    with pytest.raises(BadInputError, match=r"8 stimulus image file\(s\) are missing.*"
                       r"n01518878_10042\.JPEG.*on request"):  # fmt: skip
        run_pipeline(config, out_dir=tmp_path / "runs", device="cpu", data_dir=god_root)
    _god_images(god_root)
    res = run_pipeline(config, out_dir=tmp_path / "runs", device="cpu", data_dir=god_root)
    assert res.executed[0] == "fmri"  # the images appeared: the data stage re-ran
    _check_run(res.run_dir, n_test=2)
    trials = load_trials(res.run_dir / "fmri" / "trials.h5")
    assert (trials.split == "train").sum() == 12 and (trials.split == "test").sum() == 2


def test_load_stage_bad_inputs(tmp_path, monkeypatch):
    monkeypatch.delenv("BDS_DATA_DIR")
    raw = _shrink("god_lowlevel.yaml", "fmri")
    with pytest.raises(BadInputError, match=r"stages\.fmri: no data directory.*Subject\{N\}\.h5"):
        run_pipeline(validate_pipeline(raw, "g.yaml"), out_dir=tmp_path, device="cpu")
    raw["stages"]["fmri"]["stimuli_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(BadInputError, match=r"stages\.fmri\.stimuli_dir: '.*nowhere' does not"):
        run_pipeline(validate_pipeline(raw, "g.yaml"), out_dir=tmp_path, device="cpu")
    raw["stages"]["fmri"]["split"] = ["training", "imagery"]
    with pytest.raises(BadInputError, match=r"stages\.fmri\.split\.1"):
        validate_pipeline(raw, "g.yaml")


# ----------------------------------------------------------------------------- Haxby
@pytest.fixture
def haxby_slice(shared_data):
    folder = shared_data / "haxby2001_sub001" / "slice"
    if not folder.is_dir():
        pytest.skip(f"Haxby subject 1 not found at {folder}")
    return folder


def _haxby(**classify):
    raw = yaml.safe_load((PIPELINES / "haxby_decoding.yaml").read_text())
    raw["stages"]["classify"].update(classify)
    return validate_pipeline(raw, "haxby_decoding.yaml")


def test_haxby_decoding_pipeline_on_real_data(haxby_slice, tmp_path):
    from scipy.stats import beta, binomtest

    res = run_pipeline(_haxby(), out_dir=tmp_path, device="cpu", data_dir=haxby_slice)
    assert res.executed == ["fmri", "classify", "report"]
    m = json.loads((res.run_dir / "metrics.json").read_text())
    acc = m["accuracy"]
    assert acc["n"] == 864 and acc["chance"] == 0.125  # 108 volumes per category
    assert acc["mean"] > 0.5, acc  # far above 1/8 (measured 0.68 with these settings)
    assert acc["mean"] == acc["n_correct"] / acc["n"]
    assert acc["p_value"] == pytest.approx(
        binomtest(acc["n_correct"], 864, 0.125, alternative="greater").pvalue
    )
    # two-sided Clopper-Pearson interval, by its definition (beta quantiles)
    k = acc["n_correct"]
    assert acc["ci"] == pytest.approx(
        [beta.ppf(0.025, k, 864 - k + 1), beta.ppf(0.975, k + 1, 864 - k)]
    )
    cm = np.array(m["confusion_matrix"]["counts"])
    assert m["confusion_matrix"]["labels"][0] == "face" and cm.shape == (8, 8)
    assert cm.sum() == 864 and (cm.sum(axis=1) == 108).all()
    # per-class recall and balanced accuracy from the confusion matrix, by hand
    recall = np.diag(cm) / cm.sum(axis=1)
    np.testing.assert_allclose([m["recall"][c] for c in m["confusion_matrix"]["labels"]], recall)
    assert m["balanced_accuracy"]["mean"] == pytest.approx(recall.mean())
    assert np.trace(cm) == acc["n_correct"]
    html = (res.run_dir / "report.html").read_text()
    assert "Confusion matrix" in html and "REAL recordings" in html and "scrambledpix" in html


def test_classify_bad_inputs(haxby_slice, tmp_path):
    with pytest.raises(BadInputError, match=r"stages\.classify\.split: no trial has split 'test'"):
        run_pipeline(_haxby(split="test"), out_dir=tmp_path, device="cpu", data_dir=haxby_slice)
    with pytest.raises(BadInputError, match=r"leave-one-session-out needs at least 2 sessions"):
        run_pipeline(_haxby(groups="session"), out_dir=tmp_path, device="cpu",
                     data_dir=haxby_slice)  # fmt: skip
    with pytest.raises(BadInputError, match=r"stages\.classify\.C"):
        _haxby(C=0)
