"""``bds``: the command line of braindecode_suite.

Exit codes: 0 success; 2 bad usage or bad input (one message, no traceback
unless --verbose); 1 an error of ours (a bug: please report it).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Decode what a person saw from fMRI/EEG/MEG: datasets, features, "
    "decoders, reconstruction and evaluation.",
)
datasets_app = typer.Typer(no_args_is_help=True, help="Public datasets we can read.")
cache_app = typer.Typer(no_args_is_help=True, help="The HDF5 feature cache.")
app.add_typer(datasets_app, name="datasets")
app.add_typer(cache_app, name="cache")

_STATE = {"verbose": False}


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    from .utils.logging import logger

    handler = RichHandler(show_path=False, show_time=verbose, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _console():
    from rich.console import Console

    return Console()


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging and full tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
):
    _STATE["verbose"] = verbose
    _setup_logging(verbose)


def find_pipeline(name_or_path: str) -> Path:
    """A pipeline file path, or the name of one shipped in ``pipelines/``."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    candidates = [
        Path(__file__).resolve().parents[1] / "pipelines",
        Path(sys.prefix) / "share" / "braindecode_suite" / "pipelines",
    ]
    for folder in candidates:
        for ext in (".yaml", ".yml"):
            if (folder / f"{name_or_path}{ext}").is_file():
                return folder / f"{name_or_path}{ext}"
    return p


def _run(
    pipeline: str, out: Path, data_dir: Path | None, device: str | None, force: list[str] | None
) -> None:
    from .pipeline import run_pipeline

    result = run_pipeline(
        find_pipeline(pipeline), out_dir=out, data_dir=data_dir, device=device, force=force or []
    )
    console = _console()
    console.print(
        f"[bold]{result.run_dir}[/bold]: {len(result.executed)} stage(s) run, "
        f"{len(result.skipped)} skipped (unchanged), {result.wall_time_s:.1f} s"
    )
    metrics = result.run_dir / "metrics.json"
    if metrics.is_file():
        _print_metrics(json.loads(metrics.read_text()))
    if (result.run_dir / "report.html").is_file():
        console.print(f"report: {result.run_dir / 'report.html'}")


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    table = Table("metric", "mean", "95% CI", "chance", "p")
    for name, m in metrics.items():
        if name.startswith("_") or not isinstance(m, dict) or "mean" not in m:
            continue
        ci = m.get("ci")
        table.add_row(
            name,
            f"{m['mean']:.3f}",
            f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "",
            f"{m['chance']:.3f}" if "chance" in m else "",
            f"{m['p_value']:.2g}" if "p_value" in m else "",
        )
    _console().print(table)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Parent folder of the run directory.")] = Path("runs"),
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    force: Annotated[
        list[str] | None, typer.Option(help="Redo this stage and all after it (repeatable).")
    ] = None,
):
    """Run the embedded demo: simulated NSD-format data, real photos, end to end, offline."""
    _run("demo", out, None, device, force)


@app.command()
def run(
    pipeline: Annotated[str, typer.Argument(help="A pipeline YAML file, or a name in pipelines/.")],
    data_dir: Annotated[
        Path | None, typer.Option(help="Dataset root (overrides the YAML).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Parent folder of the run directory.")] = Path("runs"),
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N")] = None,
    force: Annotated[
        list[str] | None, typer.Option(help="Redo this stage and all after it (repeatable).")
    ] = None,
):
    """Run a pipeline; unchanged stages are skipped, interrupted ones redone."""
    _run(pipeline, out, data_dir, device, force)


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option(help="Folder of reconstructions.")],
    gt: Annotated[Path, typer.Option(help="Folder of the stimuli (same names, or --pairs).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default PRED/../eval).")] = None,
    protocol: Annotated[
        str, typer.Option(help="mindeye2 | mindeye | brain-diffuser | takagi")
    ] = "mindeye2",
    metrics: Annotated[
        list[str] | None, typer.Option(help="Only these metrics (repeatable), e.g. PixCorr.")
    ] = None,
    pairs: Annotated[Path | None, typer.Option(help="CSV with 'pred' and 'gt' columns.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the 95% CIs.")] = 1000,
):
    """Score any folder of reconstructions against the stimuli with a paper's protocol."""
    from .evaluation.folders import evaluate_folders

    out = out or pred.parent / f"{pred.name}_eval"
    results = evaluate_folders(
        pred, gt, out, protocol=protocol, metrics=metrics or None, pairs=pairs, device=device,
        n_boot=n_boot,
    )  # fmt: skip
    _print_metrics(results)
    missing = {
        k: v["missing"] for k, v in results.items() if isinstance(v, dict) and "missing" in v
    }
    for name, why in missing.items():
        _console().print(f"[yellow]{name}: not computed[/yellow]: {why}")
    _console().print(f"metrics: {out / 'metrics.json'}, report: {out / 'report.html'}")


@app.command("evaluate-3d")
def evaluate_3d(
    pred: Annotated[
        Path, typer.Option(help="Folder of <name>.ply|.glb meshes (or <name>_turntable.gif).")
    ],
    gt: Annotated[Path, typer.Option(help="Folder of the stimuli, <name>.png|jpg.")],
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default PRED_eval3d beside PRED).")
    ] = None,
    views: Annotated[int, typer.Option(help="Rendered views per object.")] = 8,
    size: Annotated[int, typer.Option(help="Side of the rendered views in pixels.")] = 256,
    elevation: Annotated[float, typer.Option(help="Camera elevation in degrees.")] = 20.0,
    protocol: Annotated[
        str, typer.Option(help="2D protocol: mindeye2 | mindeye | brain-diffuser | takagi")
    ] = "mindeye2",
    metrics: Annotated[
        list[str] | None,
        typer.Option(help="Only these metrics (repeatable), e.g. PixCorr, CLIP-sim."),
    ] = None,
    source: Annotated[str, typer.Option(help="auto | mesh | turntable")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples of the 95% CIs.")] = 1000,
):
    """Score 3D reconstructions: 2D metrics on rendered views, and CLIP similarity."""
    from .evaluation.shape3d import evaluate_mesh_folder

    out = out or pred.parent / f"{pred.name}_eval3d"
    results = evaluate_mesh_folder(
        pred, gt, out, n_views=views, size=size, elevation=elevation, protocol=protocol,
        metrics=metrics or None, source=source, device=device, n_boot=n_boot,
    )  # fmt: skip
    _print_metrics(results)
    missing = {
        k: v["missing"] for k, v in results.items() if isinstance(v, dict) and "missing" in v
    }
    for name, why in missing.items():
        _console().print(f"[yellow]{name}: not computed[/yellow]: {why}")
    turntables = results.get("_meta", {}).get("from_turntable", [])
    if turntables:
        _console().print(f"{len(turntables)} object(s) scored on turntable frames (no mesh)")
    _console().print(f"metrics: {out / 'metrics.json'}, report: {out / 'report.html'}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/demo.")]):
    """Summarise a run (stages, times, memory, metrics) and rewrite its report.html."""
    from rich.table import Table

    from .pipeline.report import regenerate_report, run_manifests

    manifests = run_manifests(run_dir)
    table = Table("stage", "kind", "wall time (s)", "peak memory (MB)", "fingerprint")
    for m in manifests:
        table.add_row(
            m["stage"],
            m["kind"],
            f"{m['wall_time_s']:.1f}",
            f"{m['peak_memory_mb']:.0f}",
            m["fingerprint"][:12],
        )
    _console().print(table)
    if (run_dir / "metrics.json").is_file():
        _print_metrics(json.loads((run_dir / "metrics.json").read_text()))
    html = regenerate_report(run_dir)
    if html is not None:
        _console().print(f"report: {html}")


def _finetune_targets(spec: dict, data_dir: Path, subject: int, ids, device: str):
    """Targets of stimuli ``ids`` (73k ids) with the extractor spec of a model folder."""
    import numpy as np

    from .datasets import read_nsd_stimuli
    from .datasets.nsd import NSDLayout
    from .features import make_extractor
    from .utils.validation import BadInputError

    if not isinstance(spec, dict) or "kind" not in spec:
        raise BadInputError(
            f"target extractor must be a JSON object with 'kind' (and 'params', 'field'), got "
            f"{spec!r}."
        )
    extractor = make_extractor(spec["kind"], **dict(spec.get("params") or {}), device=device)
    fields = extractor.fields()
    field = spec.get("field") or next(iter(fields))
    if field not in fields:
        raise BadInputError(
            f"target extractor field {field!r} is not one of {sorted(fields)} of {spec['kind']!r}."
        )
    uniq = np.unique(ids)
    images = read_nsd_stimuli(NSDLayout(data_dir, subject).stimuli, uniq)
    feats = extractor.transform(images)[field].reshape(len(uniq), -1)
    return feats[np.searchsorted(uniq, ids)], {**spec, "field": field}


@app.command()
def finetune(
    from_dir: Annotated[
        Path, typer.Option("--from", help="Pretrained model folder (save_pretrained).")
    ],
    data_dir: Annotated[Path, typer.Option(help="NSD root of the new subject's data.")],
    subject: Annotated[int, typer.Option(help="The new subject (NSD 1-8).")],
    sessions: Annotated[
        list[int], typer.Option(help="Sessions of the new subject to train on (repeatable).")
    ],
    method: Annotated[
        str, typer.Option(help="auto | adapter | reset_tuning | cluster_nn")
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default FROM_finetuned_subjNN beside it).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Fine-tuning steps (also for from scratch).")] = 500,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 32,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 3e-4,
    target_extractor: Annotated[
        str | None,
        typer.Option(
            help="JSON {kind, params, field} of the targets, when FROM has no training.json."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the new parameters and training.")] = 0,
):
    """Fine-tune a pretrained decoder on a new subject; compare with scratch and no adaptation.

    Scores are on the subject's shared test images (docs/finetune.md).
    """
    import numpy as np

    from .alignment import PUBLISHED_FINETUNE, finetune_report, read_training_info
    from .alignment.finetune import write_training_info
    from .datasets import load_nsd
    from .evaluation import write_report_html
    from .models.deep import TrainConfig, load_decoder
    from .pipeline.finetune_stages import score_targets
    from .preprocessing import average_repeats, zscore_per_session
    from .utils.io import write_json_atomic
    from .utils.validation import BadInputError, check_option, check_path

    from_dir = check_path("--from", from_dir, kind="dir")
    data_dir = check_path("--data-dir", data_dir, kind="dir")
    check_option("--method", method, ("auto", "adapter", "reset_tuning", "cluster_nn"))
    model = load_decoder(from_dir)
    if subject in model.subjects:
        raise BadInputError(
            f"--subject {subject} is already a subject of the model in {str(from_dir)!r} "
            f"(subjects {model.subjects}); fine-tune on a subject it was not trained on."
        )
    info = read_training_info(from_dir)
    if target_extractor is not None:
        try:
            spec = json.loads(target_extractor)
        except ValueError as err:
            raise BadInputError(
                f'--target-extractor must be JSON such as \'{{"kind": "pixels", '
                f'"params": {{"size": 8}}}}\', got {target_extractor!r} ({err}).'
            ) from None
    elif info is not None and "target_extractor" in info:
        spec = info["target_extractor"]
    else:
        raise BadInputError(
            f"{str(from_dir)!r} has no training.json saying how its targets were made; give "
            '--target-extractor JSON, e.g. \'{"kind": "pixels", "params": {"size": 8}}\'.'
        )
    trials = load_nsd(data_dir, subject, sessions=sorted(set(sessions)))
    trials = average_repeats(zscore_per_session(trials), split="test")
    train, test = trials.split == "train", trials.split == "test"
    if train.sum() < 2 or test.sum() < 2:
        raise BadInputError(
            f"sessions {sorted(set(sessions))} of subject {subject} hold {int(train.sum())} "
            f"training and {int(test.sum())} test images; both need at least 2."
        )
    Y, spec = _finetune_targets(spec, data_dir, subject, trials.stimulus_ids, device)
    want = int(np.prod(model.target_shapes()[model.primary_output]))
    if Y.shape[1] != want:
        raise BadInputError(
            f"the target extractor {spec} gives {Y.shape[1]} values per image but the model's "
            f"{model.primary_output!r} output has {want}; use the extractor it was trained with."
        )
    cfg = TrainConfig(
        steps=steps, batch_size=batch_size, lr=lr, seed=seed,
        device="cpu" if device == "cpu" else "auto",
    )  # fmt: skip
    rep = finetune_report(
        model, trials.X[train], Y[train], trials.X[test], Y[test], method=method,
        subject=subject, train_config=cfg, scorer=score_targets, device=device, seed=seed,
    )  # fmt: skip
    out = out or from_dir.parent / f"{from_dir.name}_finetuned_subj{subject:02d}"
    rep.adapted.save_pretrained(out / "model")
    write_training_info(
        out / "model", target_extractor=spec, finetuned_from=str(from_dir),
        subject=subject, sessions=sorted(set(sessions)), method=rep.info["method"],
    )  # fmt: skip
    metrics = {
        **rep.to_dict(),
        "subject": subject,
        "sessions": sorted(set(sessions)),
        "target_extractor": spec,
        "train_config": {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed},
        "published": PUBLISHED_FINETUNE,
    }
    write_json_atomic(out / "finetune_metrics.json", metrics)
    rows = {}
    for name in ("adapted", "scratch", "no_adaptation"):
        r = rep.scores[name]
        if "not_applicable" not in r:
            rows[f"{name}/two_way"] = {"mean": r["two_way"], "chance": 0.5}
            rows[f"{name}/mean_corr"] = {"mean": r["mean_corr"], "chance": 0.0}
    import html as _html

    published = "".join(
        f"<tr><td>{_html.escape(p['model'])}</td><td>{_html.escape(p['training data'])}</td>"
        f"<td>{p['CLIP two-way (%)']}</td><td>{_html.escape(p['source'])}</td></tr>"
        for p in PUBLISHED_FINETUNE
    )
    hows = "".join(
        f"<li><b>{k}</b>: {_html.escape(v.get('how', ''))}"
        f"{' — not applicable: ' + _html.escape(v['not_applicable']) if 'not_applicable' in v else ''}"
        "</li>"
        for k, v in rep.scores.items()
    )
    write_report_html(
        out / "report.html",
        title=f"bds finetune: subject {subject}, sessions {sorted(set(sessions))}",
        metrics=rows,
        images={},
        provenance=[
            f"Pretrained model {str(from_dir)!r} ({rep.info['model_class']}, subjects "
            f"{rep.info['pretrained_subjects']}); method {rep.info['method']!r}; "
            f"{rep.info['n_train']} training and {rep.info['n_test']} averaged test images "
            f"of subject {subject}; targets from {spec}.",
            "The published rows below are from the papers (other models, targets and "
            "amounts of pretraining): context, not a like-for-like comparison.",
        ],
        stages=[],
        extra_html=f"<h2>How each row was obtained</h2><ul>{hows}</ul>"
        "<h2>Published rows (NSD, CLIP two-way identification)</h2><table><tr><th>model</th>"
        f"<th>training data</th><th>CLIP two-way (%)</th><th>source</th></tr>{published}</table>",
    )
    table = {
        f"{k}/{m}": {"mean": v[m]}
        for k, v in rep.scores.items()
        if "not_applicable" not in v
        for m in ("two_way", "mean_corr")
    }
    _print_metrics(table)
    for k, v in rep.scores.items():
        if "not_applicable" in v:
            _console().print(f"[yellow]{k}: not applicable[/yellow]: {v['not_applicable']}")
    _console().print(
        f"model: {out / 'model'}, metrics: {out / 'finetune_metrics.json'}, "
        f"report: {out / 'report.html'}"
    )


@datasets_app.command("list")
def datasets_list():
    """The datasets with a manifest in data_manifests/."""
    from rich.table import Table

    from .datasets.manifests import list_manifests

    table = Table("name", "modality", "access", "title")
    for m in list_manifests():
        table.add_row(
            m["name"],
            m.get("modality", ""),
            m.get("access", {}).get("kind", ""),
            m.get("title", ""),
        )
    _console().print(table)


@datasets_app.command("info")
def datasets_info(name: Annotated[str, typer.Argument(help="Dataset name, e.g. nsd.")]):
    """Everything the manifest says about a dataset."""
    import yaml

    from .datasets.fetch import resolve_files
    from .datasets.manifests import get_manifest

    manifest = get_manifest(name)
    access = manifest.get("access", {})
    typer.echo(f"Access ({access.get('kind', '?')}): {str(access.get('how', '')).strip()}\n")
    rest = {k: v for k, v in manifest.items() if k != "files"}
    typer.echo(yaml.safe_dump(rest, sort_keys=False, allow_unicode=True))
    entries = manifest.get("files") or []
    if not entries:
        typer.echo("files: none declared (nothing to download).")
        return
    n_files = len(resolve_files(name, files=["*"], manifest=manifest))
    typer.echo(f"files: {len(entries)} entries, {n_files} files for all subjects")
    for e in entries:
        checksum = "sha256" if e.get("sha256") else "md5" if e.get("md5") else "no checksum"
        size = f"{e['size']} bytes" if e.get("size") is not None else "size unknown"
        per = "per subject" if e.get("subjects") == "per_subject" else "shared"
        need = "required" if e.get("required", True) else "optional"
        typer.echo(f"  - {e['path']}\n      {per}, {need}, {size}, {checksum}; "
                   f"from {_file_source(e, manifest)}")  # fmt: skip


def _file_source(entry: dict, manifest: dict) -> str:
    """Where a manifest file entry is downloaded from, in words."""
    url = entry.get("url")
    if "url" in entry:
        if url is None:
            return "a manual download (see Access)"
        return url if isinstance(url, str) else "URL per subject"
    if "s3" in entry:
        return entry["s3"]
    if manifest.get("source"):
        kind, base = next(iter(manifest["source"].items()))
        return f"{kind}: {base}"
    return "a manual download (see Access)"


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. nsd.")],
    dest: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root to fill (default $BDS_DATA_DIR); an existing copy is reused."
        ),
    ] = None,
    subjects: Annotated[
        str | None, typer.Option(help="Comma-separated subjects, e.g. 1,2 (default all).")
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            help="Only files matching this glob (repeatable); also selects optional files."
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    retries: Annotated[int, typer.Option(help="Resumed attempts after a broken connection.")] = 3,
):
    """Download a dataset's files, checksum-verified; an interrupted download resumes."""
    import os

    from .datasets.fetch import fetch_dataset
    from .utils.validation import BadInputError

    if dest is None:
        if not os.environ.get("BDS_DATA_DIR"):
            raise BadInputError("dest: give --dest DIR (or set $BDS_DATA_DIR).")
        dest = Path(os.environ["BDS_DATA_DIR"])
    paths = fetch_dataset(
        name, dest, subjects=subjects, files=files or None, progress=progress, retries=retries
    )
    typer.echo(f"{len(paths)} file(s) present in {dest}")


@datasets_app.command("verify")
def datasets_verify(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. nsd.")],
    data_dir: Annotated[Path, typer.Option(help="The dataset root to check, in place.")],
    subjects: Annotated[
        str | None, typer.Option(help="Comma-separated subjects, e.g. 1,2 (default all).")
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(help="Only files matching this glob (repeatable); also checks optional ones."),
    ] = None,
):
    """Check an existing copy: present, missing, or damaged (size or checksum) per file.

    Exits with 2 when a required file is missing or damaged.
    """
    from rich.table import Table

    from .datasets.fetch import verify_dataset

    report = verify_dataset(name, data_dir, subjects, files=files or None)
    table = Table("file", "status", "required", "detail")
    for path, r in report["files"].items():
        style = {"ok": "green", "unverified": "yellow", "unpacked": "yellow"}.get(
            r["status"], "red"
        )
        table.add_row(path, f"[{style}]{r['status']}[/{style}]", "yes" if r["required"] else "no",
                      r["detail"])  # fmt: skip
    _console().print(table)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report["counts"].items()))
    verdict = "complete" if report["complete"] else "INCOMPLETE"
    typer.echo(f"{name} in {report['data_dir']}: {verdict} ({counts})")
    if not report["complete"]:
        raise typer.Exit(2)


@cache_app.command("ls")
def cache_ls(cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None):
    """List the feature stores in the cache."""
    from rich.table import Table

    from .features import get_cache_dir, list_stores

    rows = list_stores(cache_dir)
    root = Path(cache_dir or get_cache_dir())
    table = Table(
        "file",
        "status",
        "rows",
        "fields",
        "size (MB)",
        "extractor",
        "modified",
        title=str(cache_dir or get_cache_dir()),
    )
    for r in rows:
        key = (r.get("attrs") or {}).get("cache_key", {})
        table.add_row(
            str(Path(r["path"]).relative_to(root))
            if Path(r["path"]).is_relative_to(root)
            else str(r["path"]),
            r["status"],
            str(r.get("n_rows", "")),
            ", ".join(r.get("fields") or []),
            f"{r['size_bytes'] / 2**20:.1f}",
            str(key.get("extractor", "")),
            str(r.get("modified", ""))[:16],
        )
    _console().print(table)


@cache_app.command("info")
def cache_info(path: Annotated[Path, typer.Argument(help="A store file (.h5).")]):
    """Fields, shapes, dtypes, rows and the cache key of one store."""
    from .features import FeatureStore

    typer.echo(json.dumps(FeatureStore(path).info(), indent=2, default=str))


@cache_app.command("prune")
def cache_prune(
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder.")] = None,
    older_than: Annotated[
        float | None, typer.Option(help="Also remove stores older than this many days.")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every store.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be removed.")] = False,
):
    """Remove partial and corrupt stores (and old ones, or all, when asked)."""
    from .features import prune_cache

    removed = prune_cache(
        cache_dir,
        partial=True,
        corrupt=True,
        older_than_days=older_than,
        everything=everything,
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        typer.echo(f"{verb} {r['path']} ({r['status']}, {r['size_bytes'] / 2**20:.1f} MB)")
    typer.echo(f"{verb} {len(removed)} file(s)")


def main() -> None:
    """Entry point: map our errors onto exit codes."""
    from .utils.validation import BadInputError

    try:
        app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except BadInputError as exc:
        if _STATE["verbose"]:
            raise
        typer.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo(
            "Interrupted; finished stages are kept, the interrupted one will be redone.", err=True
        )
        sys.exit(130)
    except Exception as exc:
        # usage errors of the (vendored) click inside typer: they know how to show themselves
        if callable(getattr(exc, "show", None)) and isinstance(
            getattr(exc, "exit_code", None), int
        ):
            exc.show()
            sys.exit(exc.exit_code)
        if _STATE["verbose"]:
            raise
        typer.echo(
            f"Internal error ({type(exc).__name__}: {exc}). This is a bug in "
            "braindecode_suite; re-run with --verbose and report the traceback.",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
