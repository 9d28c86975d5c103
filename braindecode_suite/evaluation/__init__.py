"""Evaluation of reconstructions: image metrics, identification and the HTML report.

``metrics`` computes PixCorr, SSIM, two-way identification, correlation distance, bootstrap
intervals and mismatched-pair chance levels as brain-diffuser and MindEye do (see
``EVALUATION_PROTOCOLS.md``); ``protocols`` runs each paper's whole protocol
(``evaluate_protocol``) with the evaluation networks of ``networks``; ``report`` draws
stimulus/reconstruction grids and writes a self-contained ``report.html``.
"""

from .brain import brain_correlation, evaluate_brain_correlation, per_image_correlation
from .identification import (
    PUBLISHED_MEEG,
    cross_subject_splits,
    format_identification,
    identification_ranks,
    segment_identification,
    within_subject_splits,
    zero_shot_identification,
)
from .images import evaluate_images
from .metrics import (
    bootstrap_ci,
    compute_pixcorr,
    compute_ssim,
    compute_ssim_columns,
    correlation_distance,
    correlation_matrix,
    identification_pvalue,
    mismatched_baseline,
    resize_images,
    two_way_from_correlation,
    two_way_identification,
)
from .networks import NETWORKS, FeatureNetwork, MissingWeights, Preprocess, load_network
from .protocols import (
    PAPER_COLUMNS,
    PROTOCOLS,
    PUBLISHED,
    Protocol,
    evaluate_protocol,
    format_paper_table,
    paper_table,
    protocol_networks,
    retrieval_top1,
)
from .report import make_grid, save_grid, write_report_html
from .shape3d import (
    evaluate_3d,
    evaluate_mesh_folder,
    read_mesh,
    read_turntable,
    render_views,
)

__all__ = [
    "PUBLISHED_MEEG",
    "cross_subject_splits",
    "format_identification",
    "identification_ranks",
    "segment_identification",
    "within_subject_splits",
    "zero_shot_identification",
    "NETWORKS",
    "PAPER_COLUMNS",
    "PROTOCOLS",
    "PUBLISHED",
    "FeatureNetwork",
    "MissingWeights",
    "Preprocess",
    "Protocol",
    "bootstrap_ci",
    "brain_correlation",
    "compute_pixcorr",
    "compute_ssim",
    "compute_ssim_columns",
    "correlation_distance",
    "correlation_matrix",
    "evaluate_3d",
    "evaluate_brain_correlation",
    "evaluate_images",
    "evaluate_mesh_folder",
    "evaluate_protocol",
    "format_paper_table",
    "identification_pvalue",
    "load_network",
    "make_grid",
    "mismatched_baseline",
    "paper_table",
    "per_image_correlation",
    "protocol_networks",
    "read_mesh",
    "read_turntable",
    "render_views",
    "resize_images",
    "retrieval_top1",
    "save_grid",
    "two_way_from_correlation",
    "two_way_identification",
    "write_report_html",
]
