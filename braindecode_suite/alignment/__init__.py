"""Cross-subject functional alignment: Procrustes, ridge, hyperalignment, shared response model."""

from .finetune import (
    FINETUNE_METHODS,
    PUBLISHED_FINETUNE,
    AdaptedDecoder,
    FinetuneReport,
    adapt,
    finetune_curve,
    finetune_report,
    read_training_info,
    write_training_info,
)
from .functional import (
    FunctionalAlignmentAdapter,
    Hyperalignment,
    ProcrustesAlignment,
    RidgeAlignment,
    SharedResponseModel,
    align_then_decode,
    load_alignment,
)

__all__ = [
    "FINETUNE_METHODS",
    "PUBLISHED_FINETUNE",
    "AdaptedDecoder",
    "FinetuneReport",
    "adapt",
    "finetune_curve",
    "finetune_report",
    "read_training_info",
    "write_training_info",
    "FunctionalAlignmentAdapter",
    "Hyperalignment",
    "ProcrustesAlignment",
    "RidgeAlignment",
    "SharedResponseModel",
    "align_then_decode",
    "load_alignment",
]
