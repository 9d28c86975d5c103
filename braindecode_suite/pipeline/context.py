"""What a running stage sees: where to write, where its inputs are, run settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils.validation import BadInputError

__all__ = ["StageContext", "read_manifest", "MANIFEST"]

MANIFEST = "manifest.json"


def read_manifest(stage_dir: Path) -> dict | None:
    """The manifest of a finished stage, or None if absent or unreadable."""
    path = Path(stage_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("status") == "complete" else None


@dataclass
class StageContext:
    """Handed to :meth:`Stage.run`.

    Attributes
    ----------
    stage_name : str
    work_dir : Path
        Temporary folder the stage writes into; renamed to the stage folder
        when the stage finishes.
    run_dir : Path
        The pipeline's run directory.
    inputs : dict of str to Path
        Artifact key -> file or folder produced by an earlier stage.
    device, seed, data_dir, pipeline_name, provenance
        Run settings.
    """

    stage_name: str
    work_dir: Path
    run_dir: Path
    inputs: dict[str, Path]
    device: str = "auto"
    seed: int = 0
    data_dir: Path | None = None
    pipeline_name: str = ""
    provenance: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def input(self, key: str) -> Path:
        """Path of the artifact ``key`` written by an earlier stage."""
        if key not in self.inputs:
            raise BadInputError(
                f"Stage {self.stage_name!r} needs the artifact {key!r}, but no earlier stage "
                f"in the pipeline writes it. Add a stage that produces {key!r} before it."
            )
        return self.inputs[key]

    def has_input(self, key: str) -> bool:
        return key in self.inputs

    def gathered(self, key: str) -> dict[str, Path]:
        """Stage name -> path of ``key`` for every earlier writer (``Stage.gathers``)."""
        prefix = f"{key}@"
        return {k[len(prefix) :]: p for k, p in self.inputs.items() if k.startswith(prefix)}

    def output(self, key: str, filename: str) -> Path:
        """Declare the artifact ``key`` and return the path to write it to."""
        rel = Path(filename)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"artifact file name must be relative, got {filename!r}")
        self.outputs[key] = rel.as_posix()
        path = self.work_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def stage_manifests(self) -> list[dict]:
        """Manifests of the stages finished so far in this run directory."""
        out = []
        for d in sorted(self.run_dir.iterdir()) if self.run_dir.is_dir() else []:
            m = read_manifest(d) if d.is_dir() else None
            if m is not None:
                out.append(m)
        return sorted(out, key=lambda m: m.get("order", 0))
