"""Run a pipeline: resolve stage dependencies, skip what is unchanged, write manifests.

Run directory layout (``<out>/<pipeline name>/``)::

    pipeline.resolved.json   the validated config actually run, with CLI overrides
    <stage>/manifest.json    config, input fingerprints, version, wall time, peak memory
    <stage>/...              the stage's artifacts
    metrics.json, *.png, report.html   published copies of the final artifacts

A stage runs in ``<stage>.tmp-<pid>-<id>/`` and is renamed to ``<stage>/`` only
when it has finished and written its manifest, so a killed run leaves nothing a
later run would trust. Stale temporary folders are removed at the next start.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..utils.io import (
    TMP_MARKER,
    atomic_dir,
    atomic_path,
    fingerprint_path,
    hash_json,
    write_json_atomic,
)
from ..utils.logging import logger
from ..utils.validation import BadInputError
from ._monitor import PeakMemory
from .base import Stage
from .context import MANIFEST, StageContext, read_manifest
from .schema import PipelineConfig, load_pipeline

__all__ = ["run_pipeline", "RunResult", "plan_dependencies"]


@dataclass
class RunResult:
    run_dir: Path
    executed: list[str]
    skipped: list[str]
    wall_time_s: float


def plan_dependencies(stages: list[Stage]) -> dict[str, dict[str, str]]:
    """For each stage, map each artifact key it reads to the stage providing it.

    Raises
    ------
    BadInputError
        When a stage reads a key no earlier stage writes.
    """
    providers: dict[str, str] = {}
    writers_so_far: dict[str, list[str]] = {}
    names = [s.name for s in stages]
    plan: dict[str, dict[str, str]] = {}
    for stage in stages:
        deps = {}
        for key, provider in stage.input_overrides.items():
            if provider not in writers_so_far.get(key, []):
                if provider not in names:
                    why = f"there is no stage {provider!r}"
                elif names.index(provider) >= names.index(stage.name):
                    why = f"{provider!r} does not come before {stage.name!r}"
                else:
                    why = f"{provider!r} does not write {key!r}"
                earlier = writers_so_far.get(key, [])
                raise BadInputError(
                    f"stages.{stage.name}.inputs.{key}: {why}; earlier stages writing "
                    f"{key!r}: {earlier or 'none'}."
                )
            deps[key] = provider
        for key in stage.reads:
            if key in deps:
                continue
            if key not in providers:
                writers = sorted({s.name for s in stages if key in s.writes})
                where = (
                    f" Stage(s) {writers} write it but come later; move them before {stage.name!r}."
                    if writers
                    else f" Add a stage that writes {key!r} before it."
                )
                raise BadInputError(
                    f"stages.{stage.name}: kind {stage.kind!r} reads the artifact {key!r}, "
                    f"which no earlier stage writes.{where}"
                )
            deps[key] = providers[key]
        for key in stage.optional_reads:
            if key in providers and key not in deps:
                deps[key] = providers[key]
        for key in stage.gathers:
            for provider in writers_so_far.get(key, []):
                deps[f"{key}@{provider}"] = provider
        plan[stage.name] = deps
        for key in stage.writes:
            providers[key] = stage.name
            writers_so_far.setdefault(key, []).append(stage.name)
    return plan


def _downstream(stages: list[Stage], plan: dict, roots: set[str]) -> set[str]:
    todo = set(roots)
    for stage in stages:  # stages are in dependency order
        if any(dep in todo for dep in plan[stage.name].values()):
            todo.add(stage.name)
    return todo


def _versions() -> dict[str, str]:
    out = {"braindecode_suite": __version__, "python": platform.python_version()}
    for mod in ("numpy", "torch", "h5py", "nibabel", "nilearn", "sklearn", "skimage"):
        m = sys.modules.get(mod)
        if m is not None and hasattr(m, "__version__"):
            out[mod] = m.__version__
    return out


def _clean_stale(run_dir: Path) -> None:
    for p in run_dir.glob(f"*{TMP_MARKER}*"):
        logger.info("removing the leftovers of an interrupted run: %s", p.name)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class _RunLock:
    """An exclusive lock on the run directory, so two runs never interleave."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"

    def __enter__(self):
        self._fh = open(self.path, "w")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise BadInputError(
                f"Another run is using {self.path.parent}; wait for it to finish "
                "or choose another --out."
            ) from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        return False


def _outputs_verify(stage_dir: Path, manifest: dict) -> bool:
    for key, out in manifest.get("outputs", {}).items():
        path = stage_dir / out["path"]
        if not path.exists() or fingerprint_path(path) != out["fingerprint"]:
            logger.info("%s: artifact %r changed or is missing; re-running", stage_dir.name, key)
            return False
    return True


def run_pipeline(
    pipeline: str | Path | tuple[PipelineConfig, list[Stage]],
    *,
    out_dir: str | Path = "runs",
    data_dir: str | Path | None = None,
    device: str | None = None,
    force: list[str] | tuple[str, ...] = (),
    until: str | None = None,
) -> RunResult:
    """Run (or resume) a pipeline.

    Parameters
    ----------
    pipeline : path | (PipelineConfig, stages)
        A pipeline YAML file, or an already validated pipeline.
    out_dir : path
        Parent of the run directory ``<out_dir>/<name>``.
    data_dir : path | None
        Dataset root; overrides the YAML's ``data_dir`` and ``$BDS_DATA_DIR``.
    device : 'auto' | 'cpu' | 'cuda' | 'cuda:N' | None
        Overrides the YAML's ``device``.
    force : list of str
        Stage names to redo, with every stage downstream of them.
    until : str | None
        Stop after this stage.

    Returns
    -------
    result : RunResult
    """
    t0 = time.perf_counter()
    if isinstance(pipeline, (str, Path)):
        config, stages = load_pipeline(pipeline)
    else:
        config, stages = pipeline
    names = [s.name for s in stages]
    for name in list(force) + ([until] if until else []):
        if name not in names:
            from ..utils.validation import check_option

            check_option("force" if name in force else "until", name, names)
    if device is not None:
        config = config.model_copy(update={"device": device})
        from ..utils.devices import resolve_device

        resolve_device(device)  # fail early on an unusable device
    resolved_data_dir = data_dir or config.data_dir or os.environ.get("BDS_DATA_DIR")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BadInputError(
            f"--data-dir {str(data_dir)!r} does not exist or is not a directory. Point it at "
            "the dataset root (e.g. the folder that holds nsddata/ for NSD)."
        )
    problems = []
    if data_dir is None and config.data_dir and not Path(config.data_dir).expanduser().is_dir():
        problems.append(f"data_dir: {config.data_dir!r} does not exist or is not a directory")
    for stage in stages:
        problems += stage.preflight()
    if problems:
        raise BadInputError("\n".join(f"{config.source}: {p}" for p in problems))
    plan = plan_dependencies(stages)
    forced = _downstream(stages, plan, set(force))

    run_dir = Path(out_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    executed, skipped = [], []
    with _RunLock(run_dir):
        _clean_stale(run_dir)
        resolved = config.model_dump()
        resolved["data_dir"] = str(resolved_data_dir) if resolved_data_dir else None
        resolved["stages"] = {
            s.name: {"kind": s.kind, **s.config.model_dump(mode="json")} for s in stages
        }
        write_json_atomic(run_dir / "pipeline.resolved.json", resolved)
        fingerprints: dict[str, str] = {}
        publishers = Counter(key for s in stages for key in s.publish)
        for order, stage in enumerate(stages):
            stage_dir = run_dir / stage.name
            inputs = {}
            input_fps = {}
            for key, provider in plan[stage.name].items():
                pm = read_manifest(run_dir / provider)
                if pm is None:
                    raise RuntimeError(f"stage {provider!r} has no manifest")  # pragma: no cover
                out_key = key.partition("@")[0]
                inputs[key] = run_dir / provider / pm["outputs"][out_key]["path"]
                input_fps[key] = {
                    "stage": provider,
                    "stage_fingerprint": fingerprints[provider],
                    "fingerprint": pm["outputs"][out_key]["fingerprint"],
                }
            ctx = StageContext(
                stage_name=stage.name,
                work_dir=stage_dir,
                run_dir=run_dir,
                inputs=inputs,
                device=config.device,
                seed=config.seed,
                data_dir=Path(resolved_data_dir) if resolved_data_dir else None,
                pipeline_name=config.name,
                provenance=list(config.provenance),
            )
            external = {
                k: (fingerprint_path(p) if Path(p).exists() else "missing")
                for k, p in stage.external_inputs(ctx).items()
            }
            config_json = stage.config.model_dump(mode="json")
            fp = hash_json(
                {
                    "kind": stage.kind,
                    "config": config_json,
                    "inputs": input_fps,
                    "external": external,
                    "version": __version__,
                    "device": config.device,
                    "seed": config.seed,
                }
            )
            fingerprints[stage.name] = fp
            old = read_manifest(stage_dir)
            if (
                stage.name not in forced
                and old is not None
                and old.get("fingerprint") == fp
                and _outputs_verify(stage_dir, old)
                and stage.outputs_valid(ctx, old)
            ):
                logger.info("[%d/%d] %s: unchanged, skipped", order + 1, len(stages), stage.name)
                skipped.append(stage.name)
            else:
                why = (
                    "forced"
                    if stage.name in forced
                    else "first run"
                    if old is None
                    else "inputs or config changed"
                )
                logger.info(
                    "[%d/%d] %s (%s): running (%s)",
                    order + 1,
                    len(stages),
                    stage.name,
                    stage.kind,
                    why,
                )
                _execute(stage, ctx, stage_dir, order, fp, config_json, input_fps, external)
                executed.append(stage.name)
            manifest = read_manifest(stage_dir)
            for key in stage.publish:
                src = stage_dir / manifest["outputs"][key]["path"]
                # several stages publishing one key (e.g. one evaluation per route) each
                # get their own name; the report publishes the main route's metrics.json
                name = f"{stage.name}_{src.name}" if publishers[key] > 1 else src.name
                with atomic_path(run_dir / name) as tmp:
                    shutil.copyfile(src, tmp)
            if until == stage.name:
                break
    wall = time.perf_counter() - t0
    logger.info(
        "run finished in %.1f s: %d run, %d skipped (%s)",
        wall,
        len(executed),
        len(skipped),
        run_dir,
    )
    return RunResult(run_dir=run_dir, executed=executed, skipped=skipped, wall_time_s=wall)


def _execute(stage, ctx, stage_dir, order, fp, config_json, input_fps, external) -> None:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    with atomic_dir(stage_dir) as work:
        ctx.work_dir = work
        with PeakMemory() as mem:
            stage.run(ctx)
        missing = [k for k in stage.writes if k not in ctx.outputs]
        if missing:
            raise RuntimeError(
                f"stage {stage.name!r} ({stage.kind}) finished without writing {missing}"
            )
        outputs = {
            key: {"path": rel, "fingerprint": fingerprint_path(work / rel)}
            for key, rel in ctx.outputs.items()
        }
        manifest = {
            "status": "complete",
            "stage": stage.name,
            "kind": stage.kind,
            "order": order,
            "fingerprint": fp,
            "config": config_json,
            "inputs": input_fps,
            "external_inputs": external,
            "outputs": outputs,
            "extra": ctx.extra,
            "versions": _versions(),
            "device": ctx.device,
            "seed": ctx.seed,
            "started": started,
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "peak_memory_mb": mem.peak_mb,
            "peak_cuda_memory_mb": PeakMemory.cuda_peak_mb(),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    ctx.work_dir = stage_dir
