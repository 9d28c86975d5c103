"""``finetune_curve``: fine-tuning a pretrained decoder vs training from scratch, over fractions
of a new subject's data, on simulated multi-subject data (a shared latent, subject mixings and
voxel counts; :func:`~braindecode_suite.datasets.make_multisubject`).

Writes the ``finetune_curve`` artifact: a folder with ``curve.json`` (the result of
:func:`~braindecode_suite.alignment.finetune_curve`, scored with the evaluation layer's
two-way identification and mean target correlation) and ``curve.png``; the ``report`` stage
shows both.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from ..alignment import finetune_curve
from ..datasets import make_multisubject
from ..evaluation import two_way_identification
from ..models.deep import TrainConfig
from ..utils.io import atomic_path, write_json_atomic
from ..utils.validation import BadInputError
from .base import Stage, StageConfig, register_stage

__all__ = ["FinetuneCurve", "average_curves", "plot_finetune_curve", "score_targets"]


def score_targets(Y_true, Y_pred) -> dict:
    """Two-way identification (``evaluation.two_way_identification``, mean over items) and
    mean target correlation (mean over target dimensions of the Pearson r across items)."""
    from ..alignment.finetune import mean_target_correlation

    t = np.asarray(Y_true, dtype=np.float64).reshape(len(Y_true), -1)
    p = np.asarray(Y_pred, dtype=np.float64).reshape(len(Y_pred), -1)
    return {
        "two_way": float(np.mean(two_way_identification(t, p))),
        "mean_corr": mean_target_correlation(t, p),
    }


def average_curves(curves: list[dict]) -> dict:
    """Mean (and, over several seeds, standard deviation) of :func:`finetune_curve` results.

    One curve is returned as it is. Several (one per seed, same fractions) give the mean score
    per fraction in ``adapted``/``scratch``/``gap``, the standard deviations (``ddof=1``) in
    ``adapted_sd``/``scratch_sd``/``gap_sd``, the seeds in ``seeds`` and each curve in
    ``per_seed``.
    """
    if len(curves) == 1:
        return curves[0]
    first = curves[0]
    metrics = list(first["adapted"][0])

    def stat(which, fn):
        return [
            {k: float(fn([c[which][i][k] for c in curves])) for k in metrics}
            for i in range(len(first["fractions"]))
        ]

    def gap(fn):
        return {
            k: [float(fn([c["gap"][k][i] for c in curves])) for i in range(len(first["fractions"]))]
            for k in first["gap"]
        }

    sd = lambda v: np.std(v, ddof=1)  # noqa: E731
    out = {k: v for k, v in first.items() if k not in ("adapted", "scratch", "gap", "per_seed")}
    out.update(
        adapted=stat("adapted", np.mean),
        scratch=stat("scratch", np.mean),
        adapted_sd=stat("adapted", sd),
        scratch_sd=stat("scratch", sd),
        gap=gap(np.mean),
        gap_sd=gap(sd),
        seeds=[c["settings"].get("seed") for c in curves],
        per_seed=curves,
    )
    return out


def plot_finetune_curve(curve: dict, path, *, metric: str = "mean_corr"):
    """Adapted and from-scratch scores against the number of training trials, with the gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = curve["n_train"]
    a = [r[metric] for r in curve["adapted"]]
    s = [r[metric] for r in curve["scratch"]]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    a_sd = [r[metric] for r in curve["adapted_sd"]] if "adapted_sd" in curve else None
    s_sd = [r[metric] for r in curve["scratch_sd"]] if "scratch_sd" in curve else None
    seeds = f", mean ± sd of {len(curve['seeds'])} seeds" if "seeds" in curve else ""
    ax.errorbar(n, a, yerr=a_sd, fmt="o-", capsize=3,
                label=f"adapted ({curve['settings']['method']}){seeds}")  # fmt: skip
    ax.errorbar(n, s, yerr=s_sd, fmt="s--", capsize=3, label="same architecture from scratch")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(k) for k in n])
    ax.minorticks_off()
    ax.set_xlabel("new subject's training trials")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title("Fine-tuning vs from scratch")
    gap_sd = curve["gap_sd"][metric] if "gap_sd" in curve else None
    ax2.bar(range(len(n)), curve["gap"][metric], yerr=gap_sd, capsize=3, color="tab:green")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xticks(range(len(n)), [str(k) for k in n])
    ax2.set_xlabel("new subject's training trials")
    ax2.set_ylabel(f"gap in {metric} (adapted − scratch)")
    ax2.set_title("Gap")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


@register_stage
class FinetuneCurve(Stage):
    """Pretrain on all but one simulated subject; adapt vs from scratch per data fraction."""

    kind = "finetune_curve"
    writes = ("finetune_curve",)

    class Config(StageConfig):
        n_subjects: int = Field(4, ge=2)
        voxels: list[int] | None = None
        latent_dim: int = Field(4, ge=1)
        target_dim: int = Field(12, ge=1)
        n_shared: int = Field(100, ge=2)
        n_unique: int = Field(800, ge=2)
        noise: float = Field(0.3, ge=0)
        fractions: list[float] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
        family: Literal["mindeye2", "mindbridge", "brainit"] = "mindeye2"
        method: Literal["auto", "adapter", "reset_tuning", "cluster_nn"] = "auto"
        pretrain_steps: int = Field(400, ge=1)
        finetune_steps: int = Field(400, ge=1)
        batch_size: int = Field(32, ge=1)
        lr: float = Field(3e-3, gt=0)
        seed: int = 0
        n_seeds: int = Field(1, ge=1)

        @field_validator("fractions")
        @classmethod
        def _fractions(cls, v):
            if not v or any(not 0 < f <= 1 for f in v):
                raise ValueError(f"fractions must be numbers in (0, 1], got {v}")
            return v

    def _curve(self, data, device: str, seed: int) -> dict:
        c = self.config
        return finetune_curve(
            data,
            fractions=c.fractions,
            family=c.family,
            method=c.method,
            pretrain_config=TrainConfig(
                steps=c.pretrain_steps,
                batch_size=c.batch_size,
                lr=c.lr,
                warmup_steps=10,
                device=device,
            ),
            finetune_config=TrainConfig(
                steps=c.finetune_steps,
                batch_size=c.batch_size,
                lr=c.lr,
                warmup_steps=5,
                device=device,
            ),
            scorer=score_targets,
            seed=seed,
        )

    def run(self, ctx):
        c = self.config
        if c.voxels is not None and len(c.voxels) != c.n_subjects:
            raise BadInputError(
                f"stages.{self.name}.voxels: {len(c.voxels)} counts for n_subjects="
                f"{c.n_subjects}; give one per subject."
            )
        device = "cpu" if ctx.device == "cpu" else "auto"
        # these models are tiny: on a CPU, several torch threads only contend (measured on 2
        # shared cores: 164 s with the default threads, 16 s with one)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        curves = []
        try:
            for seed in range(c.seed, c.seed + c.n_seeds):
                data = make_multisubject(
                    c.n_subjects,
                    n_shared=c.n_shared,
                    n_unique=c.n_unique,
                    latent_dim=c.latent_dim,
                    target_dim=c.target_dim,
                    voxels=tuple(c.voxels)
                    if c.voxels
                    else tuple(60 + 10 * i for i in range(c.n_subjects)),
                    noise=c.noise,
                    seed=seed,
                )
                curves.append(self._curve(data, device, seed))
        finally:
            torch.set_num_threads(threads)
        curve = average_curves(curves)
        curve["data"] = data.info.get("forward_model", "make_multisubject")
        curve["voxels"] = {str(s): int(t.X.shape[1]) for s, t in data.trials.items()}
        folder = ctx.output("finetune_curve", "curve")
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "curve.json", curve)
        plot_finetune_curve(curve, folder / "curve.png")
        gap = curve["gap"]["mean_corr"]
        ctx.extra["finetune_curve"] = {
            "n_train": curve["n_train"],
            "gap_mean_corr": [round(g, 4) for g in gap],
        }
