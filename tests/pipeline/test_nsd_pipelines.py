"""The shipped pipelines/nsd_*.yaml, run on a small NSD in its native layout.

The data are the demo's simulated NSD (nsd_expdesign.mat, nsd_stimuli.hdf5, betas NIfTI,
nsdgeneral / prf-visualrois / streams ROIs, COCO-style captions). The YAMLs run as shipped
except that every pretrained model is swapped for its tiny random stand-in ("tiny"), images
are small, and the one-off EfficientNet extractor is replaced by a small gabor bank (same
name, so the YAML's references still resolve): what is tested is the YAML and the stages,
not the weights.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from braindecode_suite.datasets import make_demo_nsd
from braindecode_suite.pipeline import run_pipeline, validate_pipeline

PIPELINES = Path(__file__).resolve().parents[2] / "pipelines"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nsd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd") / "nsd"
    make_demo_nsd(
        root, n_train=60, n_test=6, n_sessions=2, image_size=64, n_voxels_prf=200,
        n_voxels_category=60, random_state=1,
    )  # fmt: skip
    return root


def _tiny(raw: dict) -> dict:
    for stage in raw["stages"].values():
        kind = stage["kind"]
        if kind == "extract_features":
            for name, spec in stage["extractors"].items():
                params = spec.setdefault("params", {})
                spec.pop("dtype", None)
                spec.pop("batch_size", None)
                if spec["kind"] in ("open_clip_image", "open_clip_text"):
                    params["model_name"] = "tiny"
                    params.pop("pretrained", None)
                elif spec["kind"] == "vae":
                    stage["extractors"][name] = {
                        "kind": "vae",
                        "params": {"model": "tiny", "size": 64},
                    }
                elif spec["kind"] == "efficientnet_lite0":
                    stage["extractors"][name] = {"kind": "gabor", "params": {"size": 32, "grid": 4}}
                elif spec["kind"] == "pixels":
                    params["size"] = 12
        elif kind == "reconstruct":
            stage["output_size"] = 64
        elif kind in ("reconstruct_img2img", "reconstruct_unclip"):
            stage.update(pipeline="tiny", num_inference_steps=2, batch_size=6, dtype="float32")
            if "size" in stage:
                stage["size"] = 64
        elif kind == "evaluate_images":
            stage.update(n_boot=50, networks={})
    return raw


@pytest.mark.parametrize(
    "name", ["nsd_lowlevel", "nsd_takagi", "nsd_braindiffuser", "nsd_mindeye2"]
)
def test_shipped_nsd_pipeline_runs(nsd_root, tmp_path, name):
    path = PIPELINES / f"{name}.yaml"
    raw = _tiny(yaml.safe_load(path.read_text()))
    res = run_pipeline(
        validate_pipeline(raw, str(path)), out_dir=tmp_path, data_dir=nsd_root, device="cpu"
    )
    run_dir = tmp_path / raw["name"]
    assert res.executed[-1] == "report"
    assert (run_dir / "report.html").is_file()
    m = json.loads((run_dir / "metrics.json").read_text())
    protocol = raw["stages"]["evaluate"]["protocol"]
    assert m["_meta"]["protocol"].startswith(protocol)
    if protocol != "takagi":  # Takagi's protocol has no low-level metrics
        assert np.isfinite(m["PixCorr"]["mean"]) and np.isfinite(m["SSIM"]["mean"])
    # the paper's network metrics have no weights offline: listed as missing, not scored
    assert all("missing" in m[k] for k in ("Incep", "CLIP") if k in m)
    if name == "nsd_mindeye2":
        for roi in ("nsdgeneral", "V1", "V4", "higher_vis"):
            assert np.isfinite(m[f"BrainCorr/{roi}"]["mean"]), roi
