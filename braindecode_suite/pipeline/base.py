"""The Stage contract and its registry.

A stage is a small class: a registry ``kind``, a pydantic ``Config``, the
artifact keys it reads and writes, and ``run(ctx)``. Stages never build paths
themselves; the :class:`~braindecode_suite.pipeline.context.StageContext`
hands them where to write and where their inputs are.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..utils.validation import BadInputError, check_option

__all__ = ["Stage", "StageConfig", "register_stage", "get_stage", "STAGES"]

STAGES: dict[str, type[Stage]] = {}


class StageConfig(BaseModel):
    """Base of every stage config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage:
    """Base class of pipeline stages.

    Class attributes
    ----------------
    kind : str
        Registry name used as ``kind:`` in pipeline YAML.
    Config : type[StageConfig]
        Validated settings.
    reads : tuple of str
        Artifact keys taken from earlier stages (the last earlier stage that
        writes a key provides it).
    optional_reads : tuple of str
        Keys used when an earlier stage provides them, else the stage falls
        back to its config (e.g. a data directory).
    writes : tuple of str
        Artifact keys this stage produces.
    publish : tuple of str
        Keys whose files are also copied to the top of the run directory.
    gathers : tuple of str
        Keys taken from *every* earlier stage that writes them (e.g. the report
        gathers all reconstruction routes); they arrive as ``"<key>@<stage>"``.

    A pipeline can pick the provider of a read key with the stage's ``inputs:``
    mapping (kept in ``input_overrides``).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type[StageConfig]] = StageConfig
    reads: ClassVar[tuple[str, ...]] = ()
    optional_reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    publish: ClassVar[tuple[str, ...]] = ()
    gathers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, config: StageConfig):
        self.name = name
        self.config = config
        self.input_overrides: dict[str, str] = {}

    def preflight(self) -> list[str]:
        """Problems found before anything runs (e.g. a configured path that is missing).

        Each is ``"stages.<name>.<key>: what is wrong"``; the runner prefixes the file.
        """
        return []

    def external_inputs(self, ctx) -> dict[str, Any]:
        """Files outside the run directory that this stage reads (fingerprinted)."""
        return {}

    def outputs_valid(self, ctx, manifest: dict) -> bool:
        """Extra check before trusting a finished stage (e.g. cache files still there)."""
        return True

    def run(self, ctx) -> None:  # pragma: no cover - abstract
        raise RuntimeError(f"Stage {type(self).__name__} does not define run().")


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a stage to the registry under ``cls.kind``."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} needs a non-empty 'kind'.")
    if cls.kind in STAGES and STAGES[cls.kind] is not cls:
        raise ValueError(f"Stage kind {cls.kind!r} is registered twice.")
    STAGES[cls.kind] = cls
    return cls


def get_stage(kind: str) -> type[Stage]:
    """Look a stage class up by its ``kind``."""
    if kind not in STAGES:
        try:
            check_option("kind", kind, sorted(STAGES))
        except BadInputError as err:
            raise BadInputError(f"Unknown stage kind: {err}") from None
    return STAGES[kind]
