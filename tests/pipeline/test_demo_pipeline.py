"""The shipped demo pipeline, shrunk, end to end: outputs, above-chance metrics, cached re-run."""

import json
from pathlib import Path

import yaml

from braindecode_suite.pipeline import run_pipeline, validate_pipeline

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"


def _small_demo():
    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["simulate"].update(
        n_train=80, n_test=8, image_size=64, n_voxels_prf=400, n_voxels_category=100
    )
    raw["stages"]["features"]["extractors"]["pixels"]["params"] = {"size": 12}
    raw["stages"]["features"]["extractors"]["gabor"]["params"] = {"size": 48, "grid": 4}
    raw["stages"]["reconstruct"]["output_size"] = 64
    raw["stages"]["evaluate"].update(size=64, n_boot=100)
    raw["stages"]["evaluate"]["networks"] = {"effnet": {"kind": "efficientnet_lite0"}}
    # the smallest and the largest fraction only (each fraction's numbers do not depend on
    # the others: same pretrained model, same seeded subset order)
    raw["stages"]["finetune_curve"]["fractions"] = [0.025, 1.0]
    raw["stages"]["finetune_curve"]["n_seeds"] = 1
    return validate_pipeline(raw, str(DEMO))


def test_demo_end_to_end_and_cached_rerun(tmp_path):
    res = run_pipeline(_small_demo(), out_dir=tmp_path, device="cpu")
    run_dir = tmp_path / "demo"
    assert res.executed == [
        "simulate",
        "fmri",
        "features",
        "decode",
        "reconstruct",
        "evaluate",
        "recon_takagi",
        "recon_takagi_depth",
        "recon_mindeye2",
        "recon_braindiffuser",
        "evaluate_takagi",
        "evaluate_takagi_depth",
        "evaluate_mindeye2",
        "evaluate_braindiffuser",
        "captions_retrieval",
        "captions_clipcap",
        "recon_3d",
        "finetune_curve",
        "report",
    ]
    for name in ("metrics.json", "reconstructions.png", "report.html"):
        assert (run_dir / name).is_file(), name
    m = json.loads((run_dir / "metrics.json").read_text())
    # low-level reconstruction of simulated early-visual responses is far above chance
    assert m["PixCorr"]["mean"] > m["PixCorr"]["chance"] + 0.2
    assert m["PixCorr"]["ci"][0] > m["PixCorr"]["chance"]
    assert m["SSIM"]["mean"] > m["SSIM"]["chance"]
    # no published network weights offline: marked missing, never a number from random weights
    assert "missing" in m["Alex2"] and "missing" in m["CLIP"]
    assert (run_dir / "evaluate" / "table.md").read_text().count("|") > 20
    assert "Beside the published rows" in (run_dir / "report.html").read_text()
    # brain correlation through a ridge encoder, per region of the demo's ROI files
    for roi in ("nsdgeneral", "V1", "V2", "V3", "V4", "higher_vis"):
        entry = m[f"BrainCorr/{roi}"]
        assert entry["n"] == 8 and entry["n_voxels"] > 10, roi
    assert m["BrainCorr/nsdgeneral"]["mean"] > m["BrainCorr/nsdgeneral"]["chance"]
    # retrieval of decoded features among the 8 test items (chance 1/8)
    r = m["retrieval_brain_to_image/clip_image.embeds"]
    assert r["chance"] == 1 / 8 and 0 <= r["mean"] <= 1
    assert m["decoded_two_way/pixels.pixels"]["mean"] > 0.75
    assert m["decoded_two_way/pixels.pixels"]["p_value"] < 1e-3
    assert "two_way/effnet" in m
    html = (run_dir / "report.html").read_text()
    assert "SIMULATED" in html and "REAL ImageNet weights" in html
    assert html.index("SIMULATED") < html.index("Metrics")
    # every route ran on the 8 test stimuli and the report shows each, saying weights are random
    from braindecode_suite.datasets import read_nsd_captions
    from braindecode_suite.features import FeatureStore

    test_ids = FeatureStore(run_dir / "reconstruct" / "reconstructions.h5").stimulus_ids
    for route in ("recon_takagi", "recon_takagi_depth", "recon_mindeye2", "recon_braindiffuser"):
        store = FeatureStore(run_dir / route / "reconstructions.h5")
        assert list(store.stimulus_ids) == list(test_ids)
        assert store.read("image").shape == (8, 64, 64, 3)
        assert f"Route &#x27;{route}&#x27;" in html
        ev = json.loads((run_dir / f"evaluate_{route[6:]}" / "metrics.json").read_text())
        assert {"pixcorr", "ssim"} <= set(ev) and -1 <= ev["pixcorr"]["mean"] <= 1
    assert "RANDOM tiny weights" in html
    for route in ("captions_retrieval", "captions_clipcap"):
        caps = json.loads((run_dir / route / "captions.json").read_text())
        assert sorted(caps["captions"]) == sorted(str(i) for i in test_ids)
        assert f"Captions: route &#x27;{route}&#x27;" in html or f"route '{route}'" in html
    # retrieval returns first captions of training stimuli (the bank)
    from braindecode_suite.pipeline._artifacts import load_trials

    trials = load_trials(run_dir / "fmri" / "trials.h5")
    train_ids = sorted(set(trials.stimulus_ids[trials.split == "train"].tolist()))
    bank = {cs[0] for cs in read_nsd_captions(run_dir / "simulate" / "nsd", train_ids)}
    caps = json.loads((run_dir / "captions_retrieval" / "captions.json").read_text())
    assert set(caps["captions"].values()) <= bank
    index = json.loads((run_dir / "recon_3d" / "meshes" / "index.json").read_text())
    assert len(index["items"]) == 2 and index["no_surface"] == sorted(index["items"])
    from PIL import Image

    gif = Image.open(run_dir / "recon_3d" / "meshes" / f"{sorted(index['items'])[0]}_turntable.gif")
    assert gif.size == (32, 32)

    # the fine-tuning curve (issue 8): adapted beats from scratch on the fewest trials
    curve = json.loads((run_dir / "finetune_curve" / "curve" / "curve.json").read_text())
    assert (run_dir / "finetune_curve" / "curve" / "curve.png").is_file()
    assert curve["n_train"] == [20, 800]
    assert curve["adapted"][0]["mean_corr"] > curve["scratch"][0]["mean_corr"] + 0.03
    assert curve["gap"]["mean_corr"][-1] < curve["gap"]["mean_corr"][0]
    assert "Fine-tuning curve &#x27;finetune_curve&#x27;" in html

    # the NSD adapter read the demo data: 8 averaged test trials, 80+ training trials
    fmri = json.loads((run_dir / "fmri" / "manifest.json").read_text())
    assert fmri["extra"]["n_test"] == 8 and fmri["extra"]["n_train"] >= 80

    again = run_pipeline(_small_demo(), out_dir=tmp_path, device="cpu")
    assert again.executed == []


def test_encoding_direction_on_demo_data(tmp_path):
    """Features -> voxels with the same ridge stage; voxelwise scores are written."""
    import numpy as np

    raw = yaml.safe_load(DEMO.read_text())
    raw["stages"]["simulate"].update(
        n_train=80, n_test=20, image_size=64, n_voxels_prf=300, n_voxels_category=100
    )
    raw["stages"]["features"]["extractors"] = {
        "gabor": {"kind": "gabor", "params": {"size": 48, "grid": 4}}
    }
    raw["stages"] = {k: raw["stages"][k] for k in ("simulate", "fmri", "features")}
    raw["stages"]["encode"] = {
        "kind": "ridge",
        "direction": "encode",
        "targets": ["gabor"],
        "cv": 4,
        "cv_groups": "session",
    }
    res = run_pipeline(validate_pipeline(raw, "enc.yaml"), out_dir=tmp_path, device="cpu")
    assert res.executed[-1] == "encode"
    stage = tmp_path / "demo" / "encode"
    scores = np.load(stage / "encoding_scores.npz")
    assert scores["pearson_r"].shape == (400,)  # every nsdgeneral voxel
    m = json.loads((stage / "manifest.json").read_text())
    # simulated pRF voxels are driven by contrast energy: Gabor features predict them
    assert m["extra"]["encoding"]["median_r"] > 0.2
