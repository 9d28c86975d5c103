import numpy as np
import pytest
from scipy.stats import pearsonr

from braindecode_suite.evaluation import evaluate_images
from braindecode_suite.features import make_extractor
from braindecode_suite.utils import BadInputError


def _pair(n=6, seed=0, noise=20):
    rng = np.random.default_rng(seed)
    gt = (rng.random((n, 40, 40, 3)) * 255).astype(np.uint8)
    rec = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
    return rec, gt


def test_evaluate_images_metrics_and_chance():
    rec, gt = _pair()
    m = evaluate_images(
        rec,
        gt,
        size=40,
        n_boot=200,
        networks={"pix": make_extractor("pixels", size=8, device="cpu")},
        decoded_features={"feat": (gt.reshape(6, -1) / 255.0, rec.reshape(6, -1) / 255.0)},
    )
    expected = np.mean(
        [
            pearsonr(a.ravel().astype(float), b.ravel().astype(float))[0]
            for a, b in zip(rec, gt, strict=True)
        ]
    )
    assert m["pixcorr"]["mean"] == pytest.approx(expected, abs=1e-4)
    assert m["pixcorr"]["mean"] > 0.9 and abs(m["pixcorr"]["chance"]) < 0.1
    lo, hi = m["pixcorr"]["ci"]
    assert lo <= m["pixcorr"]["mean"] <= hi
    assert m["ssim"]["mean"] > m["ssim"]["chance"]
    assert m["two_way/pix"]["mean"] == 1.0 and m["two_way/pix"]["chance"] == 0.5
    assert m["two_way/pix"]["p_value"] < 1e-3
    assert m["decoded_two_way/feat"]["mean"] == 1.0


def test_evaluate_images_bad_inputs():
    rec, gt = _pair()
    with pytest.raises(BadInputError, match="recon has 5 images but gt has 6"):
        evaluate_images(rec[:5], gt)
    with pytest.raises(BadInputError, match="at least 2 images"):
        evaluate_images(rec[:1], gt[:1])
