"""Cross-subject functional alignment: Procrustes, ridge, hyperalignment, shared response model."""

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
    "FunctionalAlignmentAdapter",
    "Hyperalignment",
    "ProcrustesAlignment",
    "RidgeAlignment",
    "SharedResponseModel",
    "align_then_decode",
    "load_alignment",
]
