"""Evaluation of reconstructions: image metrics, identification and the HTML report.

``metrics`` computes PixCorr, SSIM, two-way identification, correlation distance, bootstrap
intervals and mismatched-pair chance levels as brain-diffuser and MindEye do (see
``EVALUATION_PROTOCOLS.md``); ``report`` draws stimulus/reconstruction grids and writes a
self-contained ``report.html``.
"""

from .images import evaluate_images
from .metrics import (
    bootstrap_ci,
    compute_pixcorr,
    compute_ssim,
    correlation_distance,
    identification_pvalue,
    mismatched_baseline,
    resize_images,
    two_way_identification,
)
from .report import make_grid, save_grid, write_report_html

__all__ = [
    "bootstrap_ci",
    "compute_pixcorr",
    "compute_ssim",
    "correlation_distance",
    "evaluate_images",
    "identification_pvalue",
    "make_grid",
    "mismatched_baseline",
    "resize_images",
    "save_grid",
    "two_way_identification",
    "write_report_html",
]
