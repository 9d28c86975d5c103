"""Averaging fine-tuning curves over seeds (the demo's mean ± sd curve)."""

import numpy as np
import pytest

from braindecode_suite.pipeline.finetune_stages import average_curves, plot_finetune_curve


def _curve(seed, adapted, scratch):
    rows = lambda v: [{"mean_corr": x, "two_way": 0.5 + x / 2} for x in v]  # noqa: E731
    return {
        "fractions": [0.1, 1.0],
        "n_train": [10, 100],
        "n_test": 5,
        "adapted": rows(adapted),
        "scratch": rows(scratch),
        "gap": {
            "mean_corr": [a - s for a, s in zip(adapted, scratch, strict=True)],
            "two_way": [(a - s) / 2 for a, s in zip(adapted, scratch, strict=True)],
        },
        "settings": {"seed": seed, "method": "adapter"},
    }


def test_one_curve_is_returned_unchanged():
    c = _curve(0, [0.5, 0.8], [0.3, 0.75])
    assert average_curves([c]) is c


def test_mean_and_sd_over_seeds_by_hand(tmp_path):
    curves = [_curve(0, [0.5, 0.8], [0.3, 0.75]), _curve(1, [0.7, 0.9], [0.4, 0.85])]
    out = average_curves(curves)
    assert out["seeds"] == [0, 1] and out["per_seed"] == curves
    assert out["adapted"][0]["mean_corr"] == pytest.approx(0.6)
    assert out["scratch"][1]["mean_corr"] == pytest.approx(0.8)
    # gaps per seed: [0.2, 0.05] and [0.3, 0.05] -> mean [0.25, 0.05], sd [0.0707, 0]
    np.testing.assert_allclose(out["gap"]["mean_corr"], [0.25, 0.05])
    np.testing.assert_allclose(out["gap_sd"]["mean_corr"], [np.sqrt(0.005), 0.0], atol=1e-12)
    assert out["adapted_sd"][0]["mean_corr"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert out["n_train"] == [10, 100] and out["fractions"] == [0.1, 1.0]
    path = plot_finetune_curve(out, tmp_path / "curve.png")
    assert path.is_file() and path.stat().st_size > 1000
