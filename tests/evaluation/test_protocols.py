"""Paper protocols against hand-worked numbers, numpy brute force, PIL and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity
from skimage.transform import resize as sk_resize

from braindecode_suite.evaluation import (
    PAPER_COLUMNS,
    PROTOCOLS,
    PUBLISHED,
    compute_ssim_columns,
    correlation_matrix,
    evaluate_protocol,
    format_paper_table,
    load_network,
    paper_table,
    retrieval_top1,
    two_way_from_correlation,
    two_way_identification,
)
from braindecode_suite.evaluation.networks import Preprocess
from braindecode_suite.utils.validation import BadInputError


def _pair(n=6, size=48, noise=40, seed=0, rsize=None):
    rng = np.random.default_rng(seed)
    gt = (rng.random((n, size, size, 3)) * 255).astype(np.uint8)
    rec = gt.astype(float) + rng.normal(0, noise, gt.shape)
    rec = np.clip(rec, 0, 255).astype(np.uint8)
    if rsize:
        rec = np.stack([np.asarray(Image.fromarray(r).resize((rsize, rsize))) for r in rec])
    return rec, gt


def _pixels(size=8):
    """A cheap feature function: the image block-averaged to size x size."""

    def fn(images):
        x = np.asarray(images, dtype=float)
        n, h, w, _ = x.shape
        x = x[:, : h // size * size, : w // size * size]
        return x.reshape(n, size, h // size, size, w // size, 3).mean(axis=(2, 4)).reshape(n, -1)

    return fn


@pytest.fixture(scope="module")
def small_alexnet():
    """Random AlexNet at 64 px with the MindEye layers (tests not about input sizes)."""
    return load_network(
        "alexnet",
        ("features.4", "features.11"),
        preprocess=Preprocess(64, antialias=False),
        weights=None,
        device="cpu",
    )


# ------------------------------------------------------------------------------ two-way

# R[i, j] = corr(gt_i, recon_j), worked by hand below
R3 = np.array(
    [
        [0.9, 0.95, 0.2],
        [0.1, 0.8, 0.3],
        [0.5, 0.6, 0.4],
    ]
)


def test_two_way_mindeye_variant_by_hand():
    # fix reconstruction j (column), count gt i != j with R[i, j] < R[j, j]:
    # j=0: .1<.9, .5<.9 -> 2/2; j=1: .95<.8 no, .6<.8 -> 1/2; j=2: .2<.4, .3<.4 -> 2/2
    np.testing.assert_allclose(two_way_from_correlation(R3, variant="mindeye"), [1, 0.5, 1])


def test_two_way_takagi_variant_by_hand():
    # fix ground truth i (row), count recon j != i with R[i, j] < R[i, i]:
    # i=0: .95<.9 no, .2<.9 -> 1/2; i=1: .1<.8, .3<.8 -> 2/2; i=2: .5<.4 no, .6<.4 no -> 0/2
    np.testing.assert_allclose(two_way_from_correlation(R3, variant="takagi"), [0.5, 1, 0])


def test_two_way_ties_fail():
    r = np.array([[0.5, 0.5], [0.2, 0.5]])
    np.testing.assert_allclose(two_way_from_correlation(r, variant="mindeye"), [1, 0])
    np.testing.assert_allclose(two_way_from_correlation(r, variant="takagi"), [0, 1])


def test_correlation_matrix_is_corrcoef_block_and_matches_existing_two_way():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(7, 3, 5)).astype(np.float32)
    pred = gt + rng.normal(scale=2.0, size=gt.shape).astype(np.float32)
    r = correlation_matrix(gt, pred)
    ref = np.corrcoef(gt.reshape(7, -1), pred.reshape(7, -1))[:7, 7:]
    np.testing.assert_allclose(r, ref, atol=1e-12)
    np.testing.assert_allclose(
        two_way_from_correlation(r, variant="mindeye"), two_way_identification(gt, pred)
    )


def test_identical_features_100_shuffled_about_50():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(20, 30))
    for variant in ("mindeye", "takagi"):
        r = correlation_matrix(feats, feats)
        assert two_way_from_correlation(r, variant=variant).mean() == 1.0
        means = [
            two_way_from_correlation(
                correlation_matrix(feats, rng.normal(size=feats.shape)), variant=variant
            ).mean()
            for _ in range(300)
        ]
        assert abs(np.mean(means) - 0.5) < 0.01  # SE of the grand mean ~ 0.004


def test_two_way_bad_input():
    with pytest.raises(BadInputError, match="variant"):
        two_way_from_correlation(R3, variant="mindeye3")
    with pytest.raises(BadInputError, match="square"):
        two_way_from_correlation(R3[:, :2])
    with pytest.raises(BadInputError, match="same shape"):
        correlation_matrix(np.ones((3, 4)), np.ones((3, 5)))


# ------------------------------------------------------------------------------ retrieval


def test_retrieval_hand_worked_directions():
    images = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    brain = np.array([[1.0, 0.1], [1.0, 0.2], [-1.0, 0.05]])
    # brain 1 is closest to image 0 (not its own): brain->image 2/3;
    # every image's closest brain embedding is its own: image->brain 3/3
    out = retrieval_top1(brain, images, n_items=3)
    assert out["brain_to_image"]["mean"] == pytest.approx(2 / 3)
    assert out["image_to_brain"]["mean"] == 1.0
    assert out["chance"] == pytest.approx(1 / 3) and out["n_repeats"] == 1


def test_retrieval_matches_brute_force():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(40, 2, 6))
    brain = images + rng.normal(scale=1.5, size=images.shape)
    out = retrieval_top1(brain, images, n_items=10, n_repeats=7, random_state=5)
    # brute force over the same subsets (default_rng(random_state).choice per repeat)
    sub_rng = np.random.default_rng(5)
    b2i, i2b = [], []
    for _ in range(7):
        idx = sub_rng.choice(40, size=10, replace=False)
        b, im = brain[idx].reshape(10, -1), images[idx].reshape(10, -1)
        cos = np.array(
            [[np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y) for y in im] for x in b]
        )
        b2i.append(np.mean([np.argmax(cos[k]) == k for k in range(10)]))
        i2b.append(np.mean([np.argmax(cos[:, k]) == k for k in range(10)]))
    np.testing.assert_allclose(out["brain_to_image"]["per_repeat"], b2i)
    np.testing.assert_allclose(out["image_to_brain"]["per_repeat"], i2b)
    assert out["brain_to_image"]["mean"] == pytest.approx(np.mean(b2i))
    half = 1.959963984540054 * np.std(b2i) / np.sqrt(7)
    np.testing.assert_allclose(
        out["brain_to_image"]["ci"], [np.mean(b2i) - half, np.mean(b2i) + half]
    )
    assert out["chance"] == 0.1


def test_retrieval_identical_and_small_sets():
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(50, 16))
    out = retrieval_top1(emb, emb)  # 50 < 300: all items, once
    assert out["brain_to_image"]["mean"] == 1.0 and out["image_to_brain"]["mean"] == 1.0
    assert out["n_items"] == 50 and out["n_repeats"] == 1 and out["chance"] == 1 / 50
    assert "all 50 items" in out["note"]
    with pytest.raises(BadInputError, match="pair up"):
        retrieval_top1(emb, emb[:10])
    with pytest.raises(BadInputError, match="all-zero"):
        retrieval_top1(np.zeros((3, 4)), emb[:3, :4])


# ------------------------------------------------------------------------------ low level


def test_mindeye_low_level_path_against_skimage():
    """MindEye: both to 256 x 256 (no antialiasing), then 425; np.corrcoef; 2-D SSIM."""
    rng = np.random.default_rng(5)
    gt = (rng.random((3, 300, 280, 3)) * 255).astype(np.uint8)  # downsampled to 256
    rec = (rng.random((3, 200, 200, 3)) * 255).astype(np.uint8)  # upsampled to 256
    rec[:, :100] = gt[:, :100, :200]  # some shared content
    out = evaluate_protocol(
        rec, gt, protocol="mindeye2", metrics=["PixCorr", "SSIM"], per_item=True, n_boot=50
    )

    def ref_resize(x):  # order=1, no antialiasing = torch bilinear, align_corners=False
        x = sk_resize(x / 255.0, (256, 256, 3), order=1, anti_aliasing=False, mode="edge")
        return sk_resize(x, (425, 425, 3), order=1, anti_aliasing=False, mode="edge")

    pix, ssim = [], []
    for r, g in zip(rec, gt, strict=True):
        a, b = ref_resize(r), ref_resize(g)
        pix.append(np.corrcoef(b.ravel(), a.ravel())[0, 1])
        ssim.append(
            structural_similarity(
                rgb2gray(a),
                rgb2gray(b),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
        )
    np.testing.assert_allclose(out["PixCorr"]["values"], pix, atol=1e-5)
    np.testing.assert_allclose(out["SSIM"]["values"], ssim, atol=1e-4)
    # chance: reconstruction i against stimulus perm[i], a derangement drawn from random_state
    from braindecode_suite.evaluation.metrics import _derangement

    perm = _derangement(3, np.random.default_rng(0))
    chance = [
        np.corrcoef(ref_resize(gt[perm[i]]).ravel(), ref_resize(rec[i]).ravel())[0, 1]
        for i in range(3)
    ]
    assert out["PixCorr"]["chance"] == pytest.approx(np.mean(chance), abs=1e-5)
    none = evaluate_protocol(rec, gt, protocol="mindeye2", metrics=["SSIM"], chance=False, n_boot=5)
    assert "chance" not in none["SSIM"]
    assert out["_meta"]["sizes"]["pre_resize"] == 256
    assert out["_meta"]["sizes"]["low_level"] == 425


def test_mindeye_upsampling_against_pil():
    """For upsampling (256 -> 425), antialiasing is moot: PIL bilinear agrees."""
    rng = np.random.default_rng(6)
    gt = (rng.random((2, 256, 256, 3)) * 255).astype(np.uint8)
    rec = (rng.random((2, 256, 256, 3)) * 255).astype(np.uint8)
    rec[:, 50:150] = gt[:, 50:150]
    out = evaluate_protocol(
        rec, gt, protocol="mindeye", metrics=["PixCorr"], per_item=True, n_boot=50
    )

    def pil425(x):
        x = x.astype(np.float32) / 255.0
        return np.stack(
            [
                np.asarray(Image.fromarray(x[..., c], mode="F").resize((425, 425), Image.BILINEAR))
                for c in range(3)
            ],
            axis=-1,
        )

    ref = [
        np.corrcoef(pil425(g).ravel(), pil425(r).ravel())[0, 1]
        for r, g in zip(rec, gt, strict=True)
    ]
    np.testing.assert_allclose(out["PixCorr"]["values"], ref, atol=1e-5)


def test_brain_diffuser_low_level_against_pil_and_per_column_ssim():
    """brain-diffuser: PIL .resize((425, 425)) of the recon, native 425 px gt, column SSIM."""
    rec, gt = _pair(n=2, size=425, noise=60, seed=7, rsize=512)
    out = evaluate_protocol(
        rec, gt, protocol="brain-diffuser", metrics=["PixCorr", "SSIM"], per_item=True, n_boot=50
    )
    pix, ssim = [], []
    for r, g in zip(rec, gt, strict=True):
        a = np.asarray(Image.fromarray(r).resize((425, 425))) / 255.0
        b = g / 255.0
        pix.append(np.corrcoef(b.reshape(1, -1), a.reshape(1, -1))[0, 1])
        ga, gb = rgb2gray(a), rgb2gray(b)
        # scikit-image 0.17 multichannel=True on a 2-D image: one 1-D SSIM per column
        cols = [
            structural_similarity(
                ga[:, c],
                gb[:, c],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for c in range(ga.shape[1])
        ]
        ssim.append(np.mean(cols))
    np.testing.assert_allclose(out["PixCorr"]["values"], pix, atol=2e-4)
    np.testing.assert_allclose(out["SSIM"]["values"], ssim, atol=2e-4)
    assert not any("native" in n for n in out["_meta"]["notes"])


def test_compute_ssim_columns_is_per_column_mean():
    rng = np.random.default_rng(8)
    a, b = rng.random((1, 30, 20, 3)), rng.random((1, 30, 20, 3))
    ga, gb = rgb2gray(a[0]), rgb2gray(b[0])
    ref = np.mean(
        [
            structural_similarity(
                ga[:, c],
                gb[:, c],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            )
            for c in range(20)
        ]
    )
    assert compute_ssim_columns(a, b, size=20)[0] != pytest.approx(ref)  # resized to 20x20
    assert compute_ssim_columns(a[:, :20], b[:, :20], size=20)[0] == pytest.approx(
        np.mean(
            [
                structural_similarity(
                    rgb2gray(a[0, :20])[:, c],
                    rgb2gray(b[0, :20])[:, c],
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=1.0,
                )
                for c in range(20)
            ]
        )
    )


def test_brain_diffuser_resizes_non_native_gt_and_says_so():
    rec, gt = _pair(n=2, size=64)
    out = evaluate_protocol(rec, gt, protocol="brain-diffuser", metrics=["PixCorr"], n_boot=20)
    assert any("not the native 425 px" in n for n in out["_meta"]["notes"])


# ------------------------------------------------------------------------------ protocol


def test_protocol_table_settings():
    me = PROTOCOLS["mindeye2"]
    assert me.pre_resize == 256 and me.low_level.size == 425 and me.two_way == "mindeye"
    assert me.network_for("Alex2").layer == "features.4"
    assert me.network_for("Alex5").layer == "features.11"
    assert me.network_for("Eff").weights_tag == "IMAGENET1K_V2"
    bd = PROTOCOLS["brain-diffuser"]
    assert bd.pre_resize is None and not bd.low_level.resize_gt and bd.low_level.ssim == "columns"
    assert bd.network_for("Eff").weights_tag == "IMAGENET1K_V1"
    tk = PROTOCOLS["takagi"]
    assert tk.two_way == "takagi" and tk.low_level is None
    assert [tk.network_for(m).layer for m in ("Alex2", "Alex5", "Alex7")] == [
        "features.5",
        "features.12",
        "classifier.5",
    ]
    for proto in PROTOCOLS.values():
        assert proto.directions.get("Eff", "lower") == "lower"
        assert all(proto.directions[m] == "higher" for m in ("Alex2", "CLIP"))


def test_evaluate_with_random_alexnet_identical_and_shared_forward(small_alexnet, monkeypatch):
    rec, gt = _pair(n=5, size=40)
    calls = []
    real = small_alexnet.extract
    monkeypatch.setattr(small_alexnet, "extract", lambda x: calls.append(len(x)) or real(x))
    out = evaluate_protocol(
        gt,
        gt,
        protocol="mindeye2",
        metrics=["Alex2", "Alex5"],
        networks={"Alex2": small_alexnet, "Alex5": small_alexnet},
        n_boot=50,
    )
    assert calls == [5, 5]  # one pass per image set serves both layers
    for m in ("Alex2", "Alex5"):
        assert out[m]["mean"] == 1.0 and out[m]["chance"] == 0.5 and out[m]["n"] == 5
        assert out[m]["p_value"] < 1e-5
        assert "random weights" in out[m]["weights"]
    assert out["Alex2"]["layer"] == "features.4" and out["Alex5"]["layer"] == "features.11"


def test_missing_weights_reported_and_rest_computed(tmp_path, monkeypatch, small_alexnet):
    import huggingface_hub.constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    rec, gt = _pair(n=4, size=40)
    out = evaluate_protocol(
        rec,
        gt,
        protocol="mindeye2",
        metrics=["PixCorr", "Alex2", "Incep", "CLIP", "Eff", "SwAV"],
        networks={"Alex2": small_alexnet},
        n_boot=50,
        device="cpu",
    )
    assert set(out["PixCorr"]) >= {"mean", "ci", "n"} and out["Alex2"]["n"] == 4
    for m, name in [
        ("Incep", "inception_v3"),
        ("CLIP", "clip_vit_l14"),
        ("Eff", "efficientnet_b1"),
        ("SwAV", "swav_resnet50"),
    ]:
        assert "mean" not in out[m]
        assert name in out[m]["missing"] and "nothing is downloaded" in out[m]["missing"]
        assert out["_meta"]["weights"][m] == "missing"
    assert "random weights" in out["_meta"]["weights"]["Alex2"]


def test_takagi_averages_samples_and_fixes_gt():
    rng = np.random.default_rng(9)
    n, k = 5, 3
    gt = (rng.random((n, 32, 32, 3)) * 255).astype(np.uint8)
    rec = np.clip(gt[:, None] + rng.normal(0, 90, (n, k, 32, 32, 3)), 0, 255).astype(np.uint8)
    fn = _pixels(4)
    out = evaluate_protocol(
        rec,
        gt,
        protocol="takagi",
        metrics=["Alex2"],
        networks={"Alex2": fn},
        per_item=True,
        n_boot=50,
    )
    # Takagi's identification.py: per gt image, r_true.mean() > r_fake.mean() over samples
    f_gt, f_rec = fn(gt), fn(rec.reshape(n * k, 32, 32, 3)).reshape(n, k, -1)
    rs = [
        [np.array([np.corrcoef(f_gt[i], f_rec[j, s])[0, 1] for s in range(k)]) for j in range(n)]
        for i in range(n)
    ]
    acc = [
        np.mean([rs[i][i].mean() > rs[i][j].mean() for j in range(n) if j != i]) for i in range(n)
    ]
    np.testing.assert_allclose(out["Alex2"]["values"], acc)
    assert out["_meta"]["n_samples"] == k and out["_meta"]["two_way_variant"] == "takagi"


def test_deterministic_under_random_state(small_alexnet):
    rec, gt = _pair(n=6, size=40, noise=80)
    kw = {
        "protocol": "mindeye2",
        "metrics": ["PixCorr", "Alex5"],
        "n_boot": 200,
        "networks": {"Alex5": small_alexnet},
    }
    a = evaluate_protocol(rec, gt, random_state=1, **kw)
    b = evaluate_protocol(rec, gt, random_state=1, **kw)
    c = evaluate_protocol(rec, gt, random_state=2, **kw)
    assert a == b
    assert a["PixCorr"]["mean"] == c["PixCorr"]["mean"]
    assert a["PixCorr"]["ci"] != c["PixCorr"]["ci"]


def test_enhanced_blend_mindeye2_only():
    rec, gt = _pair(n=4, size=40, noise=80)
    plain = evaluate_protocol(rec, gt, metrics=["PixCorr"], n_boot=20)
    same = evaluate_protocol(rec, gt, metrics=["PixCorr"], n_boot=20, blurry=rec)
    assert same["PixCorr"]["mean"] == pytest.approx(plain["PixCorr"]["mean"], abs=1e-6)
    assert same["_meta"]["enhanced"] and not plain["_meta"]["enhanced"]
    better = evaluate_protocol(rec, gt, metrics=["PixCorr"], n_boot=20, blurry=gt)
    assert better["PixCorr"]["mean"] > plain["PixCorr"]["mean"]
    with pytest.raises(BadInputError, match="no such step"):
        evaluate_protocol(rec, gt, protocol="mindeye", metrics=["PixCorr"], blurry=rec)


def test_evaluate_protocol_errors():
    rec, gt = _pair(n=3, size=16)
    with pytest.raises(BadInputError, match="Did you mean 'mindeye2'"):
        evaluate_protocol(rec, gt, protocol="mindeye-2")
    with pytest.raises(BadInputError, match="takagi protocol defines no 'PixCorr'"):
        evaluate_protocol(rec, gt, protocol="takagi", metrics=["PixCorr"])
    with pytest.raises(BadInputError, match="pair up"):
        evaluate_protocol(rec, gt[:2], metrics=["PixCorr"])
    with pytest.raises(BadInputError, match="not among the metrics"):
        evaluate_protocol(rec, gt, metrics=["PixCorr"], networks={"CLIP": _pixels()})
    with pytest.raises(BadInputError, match=r"\[0, 1\]"):
        evaluate_protocol(rec * 2.0, gt, metrics=["PixCorr"])
    with pytest.raises(BadInputError, match="one row per image"):
        evaluate_protocol(rec, gt, metrics=["Alex2"], networks={"Alex2": lambda x: np.ones(3)})


# ------------------------------------------------------------------------------ tables


def test_paper_table_layout():
    rec, gt = _pair(n=4, size=32)
    out = evaluate_protocol(
        rec, gt, metrics=["PixCorr", "SSIM", "Alex2"], networks={"Alex2": _pixels()}, n_boot=20
    )
    rows = paper_table(out, label="ours", data="demo")
    assert list(rows[0])[3:] == list(PAPER_COLUMNS)
    assert rows[0]["PixCorr"] == out["PixCorr"]["mean"]
    assert rows[0]["Alex2"] == pytest.approx(100 * out["Alex2"]["mean"])  # percent
    assert rows[0]["CLIP"] is None and rows[0]["protocol"] == "mindeye2"
    assert len(rows) == 1 + len(PUBLISHED)
    me2 = next(r for r in rows if r["method"].startswith("MindEye2") and r["data"] == "40 h")
    assert me2["Alex2"] == 96.1 and me2["SwAV"] == 0.344
    text = format_paper_table(rows)
    assert text.splitlines()[0].startswith("| method | data | PixCorr | SSIM | Alex2")
    assert "Eff↓" in text and "| 96.1 |" in text
    assert len(paper_table(None, published=["mindeye2_40h"])) == 1
