"""The shipped EEG/MEG pipelines, run on native-format recordings that carry a known signal.

THINGS-EEG2, THINGS-MEG and MEG-MASC are written in their own layouts (npy dicts, MNE epochs
with THINGS metadata, BIDS + dict-literal events + a wav); their epochs are spatial patterns x
ERP waveforms driven linearly by the stimuli's tiny-CLIP image embeddings (or tiny-wav2vec
latents of the audio), plus noise. The YAMLs run as shipped except that every pretrained model
is its tiny random stand-in, sizes are small and training is short. Identification of held-out
stimuli must then be clearly above chance: the data stage, the feature stage, training and
evaluation line up stimulus by stimulus.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from braindecode_suite.datasets import Trials
from braindecode_suite.features import FeatureStore
from braindecode_suite.pipeline import run_pipeline, validate_pipeline
from braindecode_suite.pipeline._artifacts import load_trials
from braindecode_suite.pipeline.meeg_stages import combine_subjects
from braindecode_suite.utils.validation import BadInputError

from ..datasets._meeg_fixtures import (
    make_masc_signal,
    make_things_eeg2_signal,
    make_things_meg_signal,
)

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_NET = {"backbone": "simple_conv", "backbone_kwargs": {"hidden_dim": 16, "depth": 2},
             "feature_dim": 32}  # fmt: skip


def _tiny(name: str, data_stage: str, data: dict, train: dict) -> dict:
    """The shipped YAML with tiny models, small images, short training, few bootstraps."""
    raw = yaml.safe_load((PIPELINES / name).read_text())
    raw["stages"][data_stage].update(data)
    for stage in raw["stages"].values():
        kind = stage["kind"]
        if kind == "extract_features":
            for spec in stage["extractors"].values():
                spec["params"] = {"model_name": "tiny"}
        elif kind == "speech_features":
            stage.update(model="tiny", batch_size=32)
        elif kind == "train_contrastive":
            stage.update(SMALL_NET, n_boot=50, **train)
        elif kind == "reconstruct_unclip":
            stage.update(pipeline="tiny", num_inference_steps=2, batch_size=8, size=64,
                         dtype="float32")  # fmt: skip
    return raw


def _run(raw: dict, tmp_path: Path, data_dir: Path, name: str):
    res = run_pipeline(
        validate_pipeline(raw, str(PIPELINES / name)),
        out_dir=tmp_path / "runs",
        data_dir=data_dir,
        device="cpu",
    )
    return res, tmp_path / "runs" / raw["name"]


# ----------------------------------------------------------------------------- THINGS-EEG2
@pytest.fixture(scope="module")
def eeg2(tmp_path_factory):
    base = tmp_path_factory.mktemp("eeg2")
    truth = make_things_eeg2_signal(base / "data", base / "manifests")
    return base, truth


@pytest.fixture
def eeg2_env(eeg2, monkeypatch):
    monkeypatch.setenv("BDS_MANIFEST_DIR", str(eeg2[0] / "manifests"))
    return eeg2


EEG2_DATA = {"subjects": [1, 2, 3], "variant": "official", "image_size": 32,
             "average_train_repeats": False}  # fmt: skip
EEG2_TRAIN = {"epochs": 40, "batch_size": 64, "lr": 0.002, "val_fraction": 0.1, "patience": 10}


def test_things_eeg2_within_subject_identifies_test_concepts(eeg2_env, tmp_path):
    base, truth = eeg2_env
    raw = _tiny("things_eeg2_nice.yaml", "eeg", EEG2_DATA, EEG2_TRAIN)
    res, run_dir = _run(raw, tmp_path, base / "data", "things_eeg2_nice.yaml")
    assert res.executed == ["eeg", "features", "decode", "reconstruct", "report"]
    trials = load_trials(run_dir / "eeg" / "trials.h5")
    assert trials.X.shape[1:] == (17, 100)
    n_train, n_test = truth["n_train"], truth["n_test"]
    # every training repetition kept, the 4 test repetitions averaged per subject
    assert np.sum(trials.split == "train") == 3 * n_train * 4
    assert np.sum(trials.split == "test") == 3 * n_test
    # the feature stage's embeddings are those the signal was built from (same images)
    feats = json.loads((run_dir / "features" / "features.json").read_text())
    emb = FeatureStore(feats["clip_image"]["path"]).read("embeds", np.arange(n_train + n_test))
    np.testing.assert_allclose(emb, truth["embeddings"], rtol=1e-3, atol=1e-4)
    m = json.loads((run_dir / "metrics.json").read_text())
    chance = 1 / n_test
    assert m["top1"]["chance"] == pytest.approx(chance)
    assert m["top1"]["mean"] > 3 * chance, m["top1"]
    for s in (1, 2, 3):
        assert m[f"subject_{s}"]["top5"]["mean"] > 5 * chance
    assert m["published"]["NICE (Song et al., ICLR 2024) top1"]["value"] == pytest.approx(0.156)
    # predictions: the test concepts, field named as the target, as reconstruct_unclip reads
    preds = FeatureStore(run_dir / "decode" / "predictions.h5")
    assert preds.fields == ["clip_image.embeds"]
    np.testing.assert_array_equal(preds.stimulus_ids, np.arange(n_train, n_train + n_test))
    recon = FeatureStore(run_dir / "reconstruct" / "reconstructions.h5")
    assert recon.read("image").shape == (n_test, 64, 64, 3)
    assert "RANDOM tiny weights" in (run_dir / "report.html").read_text()  # unCLIP route
    for s in (1, 2, 3):
        assert (run_dir / "decode" / "models" / f"within_subject-{s}" / "config.json").is_file()


def test_things_eeg2_leave_one_subject_out_is_above_chance(eeg2_env, tmp_path):
    base, truth = eeg2_env
    raw = _tiny("things_eeg2_loso.yaml", "eeg", EEG2_DATA, EEG2_TRAIN)
    raw["stages"].pop("reconstruct")  # the unCLIP route is tested above
    raw["stages"]["report"] = {"kind": "identification_report"}
    res, run_dir = _run(raw, tmp_path, base / "data", "things_eeg2_loso.yaml")
    m = json.loads((run_dir / "metrics.json").read_text())
    chance = 1 / truth["n_test"]
    assert m["_meta"]["mode"] == "loso"
    assert m["top1"]["mean"] > 3 * chance, m["top1"]
    for s in (1, 2, 3):
        assert m[f"subject_{s}"]["top5"]["mean"] > 5 * chance
        hist = m["_meta"]["history"][str(s)]
        # trained on the two other subjects' training trials, validated on part of them
        assert hist["n_train"] + hist["n_val"] == 2 * truth["n_train"] * 4
    assert (run_dir / "report.html").is_file()


# ----------------------------------------------------------------------------- THINGS-MEG
def test_things_meg_pipeline_runs_and_identifies(tmp_path):
    root = tmp_path / "ds004212"
    truth = make_things_meg_signal(root)
    raw = _tiny("things_meg_atm.yaml", "meg", {"subjects": [1, 2], "image_size": 32},
                {"epochs": 40, "batch_size": 32, "lr": 0.002})  # fmt: skip
    res, run_dir = _run(raw, tmp_path, root, "things_meg_atm.yaml")
    assert res.executed[-1] == "report"
    stim = json.loads((run_dir / "meg" / "stimuli.json").read_text())
    # image_path images_meg/<concept>/<file> found as images/<concept>/<file>
    assert stim["n_missing"] == 0
    assert [Path(f).relative_to(root / "images").as_posix() for f in stim["files"]] == sorted(
        "/".join(p.split("/")[1:]) for p in truth["paths"]
    )
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["top1"]["chance"] == pytest.approx(1 / 10)
    assert m["top1"]["mean"] > 2 * m["top1"]["chance"], m["top1"]
    assert m["top5"]["mean"] > 0.5 + 0.1, m["top5"]  # chance 0.5


# ----------------------------------------------------------------------------- MEG-MASC
def test_speech_pipeline_identifies_segments(tmp_path):
    root = tmp_path / "bids"
    truth = make_masc_signal(root)
    data = {"subjects": [1, 2], "tmin": -0.2, "tmax": 0.6, "l_freq": None, "h_freq": None,
            "sfreq": None, "test_fraction": 0.3, "block_s": 10.0}  # fmt: skip
    raw = _tiny("speech_meg_defossez.yaml", "meg", data,
                {"epochs": 40, "batch_size": 32, "lr": 0.002})  # fmt: skip
    res, run_dir = _run(raw, tmp_path, root, "speech_meg_defossez.yaml")
    assert res.executed == ["meg", "speech", "decode", "report"]
    segs = json.loads((run_dir / "meg" / "segments.json").read_text())["segments"]
    assert len(segs) == len(truth["onsets"])
    # segments: the audio window of each word, in the order of the stimulus ids
    onsets = sorted(truth["onsets"], key=lambda o: f"stimuli/audio/lw1.wav@{o:.3f}")
    np.testing.assert_allclose([s["onset"] for s in segs], np.asarray(onsets) - 0.2, atol=1e-6)
    feats = json.loads((run_dir / "speech" / "features.json").read_text())
    lat = FeatureStore(feats["wav2vec2"]["path"]).read("latents", np.arange(len(segs)))
    order = np.argsort([f"stimuli/audio/lw1.wav@{o:.3f}" for o in truth["onsets"]])
    np.testing.assert_allclose(lat, truth["latents"][order], rtol=1e-4, atol=1e-5)
    trials = load_trials(run_dir / "meg" / "trials.h5")
    test_ids = np.unique(trials.stimulus_ids[trials.split == "test"])
    train_ids = np.unique(trials.stimulus_ids[trials.split == "train"])
    assert not np.intersect1d(test_ids, train_ids).size
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["_meta"]["mode"] == "pooled"
    n = len(test_ids)
    assert m["top10"]["chance"] == pytest.approx(10 / n)
    assert m["top10"]["mean"] > min(0.9, 2 * 10 / n), (m["top10"], n)
    assert m["top1"]["mean"] > 3 / n
    assert "Défossez" in (run_dir / "report.html").read_text()


# ----------------------------------------------------------------------------- units
def _trials(subject, names, ids, ch, split="train"):
    X = np.arange(len(ids) * len(ch) * 3, dtype=np.float32).reshape(len(ids), len(ch), 3)
    return Trials(X=X, stimulus_ids=ids, split=[split] * len(ids), session=np.zeros(len(ids)),
                  repeat=np.zeros(len(ids)), subject=subject,
                  info={"stimulus_names": np.array(names), "ch_names": ch,
                        "stimulus_concepts": np.array([n.upper() for n in names])})  # fmt: skip


def test_combine_subjects_reindexes_stimuli_and_keeps_common_channels():
    a = _trials(1, ["b", "c"], [1, 0], ["x", "y", "z"])
    b = _trials(2, ["a", "c"], [0, 1], ["z", "x"])
    out = combine_subjects([a, b])
    assert out.info["stimulus_names"].tolist() == ["b", "c", "a"]  # first subject's order
    assert out.info["ch_names"] == ["x", "z"]
    names = out.info["stimulus_names"][out.stimulus_ids].tolist()
    assert names == ["c", "b", "a", "c"]
    assert out.info["stimulus_concepts"].tolist() == ["B", "C", "A"]
    np.testing.assert_array_equal(out.X[:2], a.X[:, [0, 2]])
    np.testing.assert_array_equal(out.X[2:], b.X[:, [1, 0]])
    assert out.subject.tolist() == [1, 1, 2, 2]


def test_combine_subjects_rejects_unequal_windows():
    a = _trials(1, ["a"], [0], ["x"])
    b = _trials(2, ["a"], [0], ["x"])
    b.X = b.X[:, :, :2]
    with pytest.raises(BadInputError, match="subject 2 has 2 time samples.*first subject 3"):
        combine_subjects([a, b])


def test_save_trials_keeps_epochs_3d(tmp_path):
    from braindecode_suite.pipeline._artifacts import save_trials

    t = _trials(1, ["a", "b"], [0, 1], ["x", "y"])
    save_trials(tmp_path / "t.h5", t)
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["X"].chunks == (2, 2, 3)
    np.testing.assert_array_equal(load_trials(tmp_path / "t.h5").X, t.X)


def test_bad_configs_name_the_key():
    raw = yaml.safe_load((PIPELINES / "things_eeg2_nice.yaml").read_text())
    raw["stages"]["decode"]["mode"] = "across"
    raw["stages"]["decode"]["backbone"] = "resnet"
    raw["stages"]["eeg"]["subjects"] = [0, 11]
    with pytest.raises(BadInputError) as err:
        validate_pipeline(raw, "x.yaml")
    msg = str(err.value)
    assert "stages.decode.mode" in msg and "'within', 'loso' or 'pooled'" in msg
    assert "stages.decode.backbone" in msg and "simple_conv" in msg
    assert "stages.eeg.subjects" in msg and "1-10" in msg
    raw = yaml.safe_load((PIPELINES / "speech_meg_defossez.yaml").read_text())
    raw["stages"]["decode"]["published"] = "nope"
    with pytest.raises(BadInputError, match="published.*defossez_gwilliams_meg"):
        validate_pipeline(raw, "x.yaml")


def test_unclip_without_init_needs_full_strength(eeg2_env, tmp_path):
    base, _ = eeg2_env
    raw = _tiny("things_eeg2_nice.yaml", "eeg", {**EEG2_DATA, "subjects": [1]},
                {"epochs": 1, "val_fraction": 0.0})  # fmt: skip
    raw["stages"]["reconstruct"]["strength"] = 0.5
    with pytest.raises(BadInputError, match=r"init: 'none'.*strength: 1.0.*got strength=0.5"):
        _run(raw, tmp_path, base / "data", "things_eeg2_nice.yaml")


def test_missing_data_dir_is_named(tmp_path):
    raw = yaml.safe_load((PIPELINES / "speech_meg_defossez.yaml").read_text())
    raw["stages"]["meg"]["data_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(BadInputError, match="stages.meg.data_dir.*nowhere.*MEG-MASC BIDS root"):
        run_pipeline(validate_pipeline(raw, "x.yaml"), out_dir=tmp_path)
