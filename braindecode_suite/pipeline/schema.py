"""Pipeline YAML: parsed, validated with pydantic, errors reported by key path.

A pipeline file looks like::

    name: demo
    description: ...
    device: auto          # auto | cpu | cuda | cuda:N
    seed: 0
    data_dir: null        # overridden by --data-dir, else $BDS_DATA_DIR
    provenance: ["..."]   # plain-language statements copied into the report
    stages:
      fmri:               # stage name (its folder in the run directory)
        kind: load_nsd    # registry name of the stage
        subject: 1        # the stage's own settings
      ...
      evaluate_takagi:
        kind: evaluate_images
        inputs: {reconstructions: recon_takagi}   # take this artifact from that stage
                          # (default: the last earlier stage that writes it)

The whole file is checked before anything runs: an unknown key, a wrong type or
an unknown stage kind is reported with the file, the key path and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ..utils.validation import BadInputError
from .base import Stage, StageConfig, get_stage

__all__ = ["PipelineConfig", "load_pipeline", "validate_pipeline", "format_validation_error"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PipelineConfig(BaseModel):
    """Top level of a pipeline YAML file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Pipeline name; the run directory is <out>/<name>.")
    description: str = ""
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    seed: int = 0
    data_dir: str | None = None
    provenance: list[str] = Field(default_factory=list)
    stages: dict[str, dict[str, Any]]
    _source: str = PrivateAttr("<pipeline>")

    @property
    def source(self) -> str:
        """The file this config was read from (for messages)."""
        return self._source

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be letters, digits, '_', '-' or '.' (it names a folder)")
        return v

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, v: dict) -> dict:
        if not v:
            raise ValueError("a pipeline needs at least one stage")
        for name, spec in v.items():
            if not _NAME_RE.match(str(name)):
                raise ValueError(f"stage name {name!r} must be letters, digits, '_', '-' or '.'")
            if not isinstance(spec, dict):
                raise ValueError(f"stage {name!r} must be a mapping with a 'kind' key")
        return v


def _loc(parts) -> str:
    return ".".join(str(p) for p in parts) or "<top level>"


def format_validation_error(err: ValidationError, source: str, prefix: tuple = ()) -> str:
    """One line per problem: ``file: key.path: what is wrong (got ...)``."""
    lines = []
    for e in err.errors():
        loc = _loc(prefix + tuple(e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        got = e.get("input")
        got_txt = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        lines.append(f"{source}: {loc}: {msg}{got_txt}")
    return "\n".join(lines)


def validate_pipeline(raw: Any, source: str = "<pipeline>") -> tuple[PipelineConfig, list[Stage]]:
    """Validate a parsed YAML mapping; return the config and the stage objects."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: the file must hold a mapping, got {type(raw).__name__}.")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise BadInputError(format_validation_error(err, source)) from None
    config._source = source
    stages: list[Stage] = []
    problems: list[str] = []
    for name, spec in config.stages.items():
        spec = dict(spec)
        kind = spec.pop("kind", None)
        overrides = spec.pop("inputs", None) or {}
        if not isinstance(overrides, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in overrides.items()
        ):
            problems.append(
                f"{source}: stages.{name}.inputs: must map artifact keys to earlier stage "
                f"names, e.g. {{reconstructions: recon_takagi}} (got {overrides!r})"
            )
            continue
        if kind is None:
            problems.append(f"{source}: stages.{name}.kind: missing (say which stage to run)")
            continue
        try:
            cls = get_stage(kind)
        except BadInputError as err:
            problems.append(f"{source}: stages.{name}.kind: {err}")
            continue
        try:
            stage_config: StageConfig = cls.Config.model_validate(spec)
        except ValidationError as err:
            problems.append(format_validation_error(err, source, ("stages", name)))
            continue
        unknown = sorted(set(overrides) - set(cls.reads) - set(cls.optional_reads))
        if unknown:
            problems.append(
                f"{source}: stages.{name}.inputs: kind {kind!r} does not read {unknown}; "
                f"it reads {sorted(set(cls.reads) | set(cls.optional_reads))}"
            )
            continue
        stage = cls(name, stage_config)
        stage.input_overrides = dict(overrides)
        stages.append(stage)
    if problems:
        raise BadInputError("\n".join(problems))
    return config, stages


def load_pipeline(path: str | Path) -> tuple[PipelineConfig, list[Stage]]:
    """Read and validate a pipeline YAML file."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"Pipeline file {str(path)!r} does not exist. Pipelines live in the "
            "'pipelines/' folder, e.g. pipelines/demo.yaml."
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise BadInputError(f"{path}: not valid YAML: {err}") from None
    return validate_pipeline(raw, str(path))
