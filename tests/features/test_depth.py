"""Depth maps from a tiny random DPT saved with save_pretrained (the real from_pretrained path)."""

import json
import shutil

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from braindecode_suite.features import extract_features, make_extractor  # noqa: E402
from braindecode_suite.features.depth import DepthExtractor, tiny_depth_folder  # noqa: E402
from braindecode_suite.utils import BadInputError  # noqa: E402
from braindecode_suite.utils.validation import BadTypeError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_home")


@pytest.fixture(autouse=True)
def _shared_tiny_cache(_private_dirs, monkeypatch, tiny_home):
    # build the tiny DPT once for the module, not once per test
    monkeypatch.setenv("BDS_CACHE_DIR", str(tiny_home))


def _images(n=5, h=48, w=40, seed=0):
    """Smooth random images (natural-image-like spectra rather than pixel noise)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 6, 5))).float()
    x = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _minmax(d):
    lo = d.min(axis=(1, 2), keepdims=True)
    return (d - lo) / (d.max(axis=(1, 2), keepdims=True) - lo)


def _resize(depth, size):
    return torch.nn.functional.interpolate(
        depth[:, None], size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )[:, 0]


def _copy_with_processor(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "preprocessor_config.json").read_text())
    cfg.update(changes)
    (dst / "preprocessor_config.json").write_text(json.dumps(cfg))
    return dst


def test_fields_without_loading_and_output_shapes():
    ext = DepthExtractor("tiny", size=32, device="cpu")
    assert ext.fields() == {"depth": ((32, 32), "float32")}
    assert "depth_model" not in ext.__dict__
    out = ext.transform(_images())
    d = out["depth"]
    assert set(out) == {"depth"} and d.shape == (5, 32, 32) and d.dtype == np.float32
    # normalised per image: each map spans exactly [0, 1]
    np.testing.assert_allclose(d.min(axis=(1, 2)), 0, atol=1e-6)
    np.testing.assert_allclose(d.max(axis=(1, 2)), 1, atol=1e-6)
    assert d.std(axis=(1, 2)).min() > 0.05  # not a degenerate (all-zero) random model
    raw = DepthExtractor("tiny", size=24, normalize=False, device="cpu").transform(_images())
    assert raw["depth"].shape == (5, 24, 24) and np.all(np.isfinite(raw["depth"]))


@pytest.mark.parametrize(
    "changes",
    [
        {},  # the tiny DPT's own processor: bicubic to 64×64, mean = std = 0.5
        {  # Depth-Anything-like: keep the aspect ratio, multiple of 14, bilinear, ImageNet stats
            "size": {"height": 56, "width": 56},
            "keep_aspect_ratio": True,
            "ensure_multiple_of": 14,
            "resample": 2,
            "image_mean": [0.485, 0.456, 0.406],
            "image_std": [0.229, 0.224, 0.225],
        },
        {"do_pad": True, "size_divisor": 24, "size": {"height": 60, "width": 60}},
    ],
)
@pytest.mark.parametrize("backend", ["torchvision", "pil"])
def test_torch_preprocessing_matches_the_transformers_image_processor(tmp_path, changes, backend):
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    folder = _copy_with_processor(tiny_depth_folder(0), tmp_path / "dpt", **changes)
    ext = DepthExtractor(str(folder), device="cpu")
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    if backend == "pil":
        processor = DPTImageProcessorPil.from_pretrained(folder)
    imgs = _images(4)
    ref = processor(images=list(imgs), return_tensors="pt")["pixel_values"]
    ours = ext.preprocess(ext.prepare(imgs))
    assert ours.shape == ref.shape
    if changes.get("keep_aspect_ratio"):
        # 48×40: the scale nearer 1 (56 / 48) for both sides, then multiples of 14: 56×46.7 -> 56×42
        assert ours.shape[-2:] == (56, 42)
    if changes.get("do_pad"):
        assert ours.shape[-2:] == (72, 72)
    diff = (ours - ref).abs()
    # the processor resizes uint8 images (rounded, clamped), ours float: about 1/255 apart
    # (measured: max 0.008-0.018, mean 0.002-0.005 in normalised units)
    assert diff.max() < 0.03 and diff.mean() < 0.008, (diff.max(), diff.mean())


def test_extractor_equals_the_model_called_directly_plus_manual_postprocessing():
    folder = tiny_depth_folder(0)
    imgs = _images(3)
    ext = DepthExtractor("tiny", size=32, device="cpu")
    out = ext.transform(imgs)["depth"]
    raw = DepthExtractor("tiny", size=32, normalize=False, device="cpu").transform(imgs)["depth"]
    model = transformers.AutoModelForDepthEstimation.from_pretrained(folder).eval()
    assert type(model).__name__ == "DPTForDepthEstimation"
    # 1) the very pixel values the extractor makes: forward + post-processing exactly
    with torch.no_grad():
        depth = model(pixel_values=ext.preprocess(ext.prepare(imgs))).predicted_depth
    assert depth.shape == (3, 64, 64)
    manual = _resize(depth, 32).numpy()
    np.testing.assert_allclose(raw, manual, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(out, _minmax(manual), atol=1e-4)
    # 2) end to end from the transformers image processor's pixel values (independent)
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        pv = processor(images=list(imgs), return_tensors="pt")["pixel_values"]
        ref = _minmax(_resize(model(pixel_values=pv).predicted_depth, 32).numpy())
    assert np.abs(out - ref).max() < 0.03 and np.abs(out - ref).mean() < 0.004


def test_batching_equivalence_and_determinism():
    imgs = _images(6, seed=1)
    a = DepthExtractor("tiny", size=32, batch_size=4).transform(imgs)["depth"]
    b = DepthExtractor("tiny", size=32, batch_size=1).transform(imgs)["depth"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(
        a, DepthExtractor("tiny", size=32, batch_size=4).transform(imgs)["depth"]
    )
    assert not np.allclose(a[0], a[1], atol=1e-3)  # different images, different depth
    other = DepthExtractor("tiny:1", size=32).transform(imgs)["depth"]  # other random weights
    assert not np.allclose(a, other, atol=1e-3)


def test_tiny_model_is_rebuilt_identically(tmp_path, monkeypatch):
    first = tiny_depth_folder(0)
    monkeypatch.setenv("BDS_CACHE_DIR", str(tmp_path))
    second = tiny_depth_folder(0)
    assert first != second
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_weights_id_changes_with_the_model(tmp_path):
    key = DepthExtractor("tiny", size=32).cache_key()
    assert key["extractor"] == "depth" and key["weights"] == "tiny"
    assert key["transformers"] == transformers.__version__
    assert set(key["weights_sha256"]) == {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
    }
    assert DepthExtractor("tiny:1", size=32).cache_key() != key
    # a local copy whose weights differ
    folder = tmp_path / "my-dpt"
    shutil.copytree(tiny_depth_folder(0), folder)
    same = DepthExtractor(str(folder), size=32).cache_key()
    assert same["weights"] == "local/my-dpt"
    assert same["weights_sha256"] == key["weights_sha256"]
    model = transformers.AutoModelForDepthEstimation.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(folder)
    changed = DepthExtractor(str(folder), size=32).cache_key()
    assert (
        changed["weights_sha256"]["model.safetensors"] != key["weights_sha256"]["model.safetensors"]
    )
    # and a change of preprocessing (processor config) too
    _copy_with_processor(tiny_depth_folder(0), tmp_path / "dpt-bilinear", resample=2)
    bilinear = DepthExtractor(str(tmp_path / "dpt-bilinear"), size=32).cache_key()
    assert (
        bilinear["weights_sha256"]["preprocessor_config.json"]
        != (key["weights_sha256"]["preprocessor_config.json"])
    )
    # params are part of the key
    assert DepthExtractor("tiny", size=16).cache_key() != key
    assert DepthExtractor("tiny", size=32, normalize=False).cache_key() != key


def test_registry_and_extract_features_cache(tmp_path):
    ext = make_extractor("depth", model="tiny", size=16)
    assert isinstance(ext, DepthExtractor)
    imgs = _images(5)
    calls = []

    def load_images(ids):
        calls.append(list(ids))
        return imgs[np.asarray(ids)]

    kw = {"stimulus_set": {"name": "tiny"}, "cache_dir": tmp_path, "chunk": 2}
    path = extract_features(ext, np.arange(5), load_images, **kw)
    n_calls = len(calls)
    assert n_calls == 3
    again = make_extractor("depth", model="tiny", size=16)
    assert extract_features(again, np.arange(5), load_images, **kw) == path
    assert len(calls) == n_calls  # cache hit: nothing loaded or computed
    from braindecode_suite.features import FeatureStore

    np.testing.assert_allclose(
        FeatureStore(path).read("depth"), ext.transform(imgs)["depth"], atol=1e-5
    )
    other = make_extractor("depth", model="tiny:1", size=16)
    assert extract_features(other, np.arange(5), load_images, **kw) != path  # other weights


def test_bad_arguments(tmp_path):
    with pytest.raises(BadInputError, match="size"):
        DepthExtractor("tiny", size=2)
    with pytest.raises(BadInputError, match="tiny:<seed>"):
        DepthExtractor("tiny:abc")
    with pytest.raises(BadTypeError, match="model must be"):
        DepthExtractor(3)
    with pytest.raises(BadInputError, match="does not exist"):
        DepthExtractor(str(tmp_path / "no" / "such" / "dpt")).weights_id()
    with pytest.raises(BadInputError, match="Could not load the depth .* from the local folder"):
        DepthExtractor(str(tmp_path)).transform(_images(1))  # a folder without config.json
    lanczos = _copy_with_processor(tiny_depth_folder(0), tmp_path / "lanczos", resample=1)
    with pytest.raises(BadInputError, match="resample 1 is not supported"):
        DepthExtractor(str(lanczos)).transform(_images(1))
    with pytest.raises(BadInputError, match="images must have shape"):
        DepthExtractor("tiny").transform(np.zeros((2, 8, 8), np.uint8))


def test_missing_model_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ext = DepthExtractor(device="cpu")
    assert ext.model == "Intel/dpt-hybrid-midas"
    assert ext.weights_id()["weights"] == "Intel/dpt-hybrid-midas"  # known without the weights
    assert ext.fields() == {"depth": ((64, 64), "float32")}
    with pytest.raises(BadInputError, match="'Intel/dpt-hybrid-midas' is not available offline"):
        ext.transform(_images(1))
    with pytest.raises(BadInputError, match="huggingface-cli download Intel/dpt-hybrid-midas"):
        ext.depth_model  # noqa: B018
