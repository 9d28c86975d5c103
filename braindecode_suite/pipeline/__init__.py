"""Pipeline YAML schema, stage registry and runner.

Importing this package registers the built-in stages.
"""

from . import dataset_stages as _dataset_stages  # noqa: F401
from . import finetune_stages as _finetune_stages  # noqa: F401  (finetune_curve)
from . import meeg_stages as _meeg_stages  # noqa: F401  (EEG/MEG stage kinds)
from . import recon_stages as _recon_stages  # noqa: F401  (registers the stage kinds)
from . import stages as _stages  # noqa: F401
from .base import STAGES, Stage, StageConfig, get_stage, register_stage
from .runner import RunResult, plan_dependencies, run_pipeline
from .schema import PipelineConfig, load_pipeline, validate_pipeline

__all__ = [
    "STAGES",
    "PipelineConfig",
    "RunResult",
    "Stage",
    "StageConfig",
    "get_stage",
    "load_pipeline",
    "plan_dependencies",
    "register_stage",
    "run_pipeline",
    "validate_pipeline",
]
