"""VAE latents from a tiny AutoencoderKL saved to a local folder (the real from_pretrained path)."""

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from braindecode_suite.features import make_extractor  # noqa: E402
from braindecode_suite.features.vae import VAELatentExtractor  # noqa: E402
from braindecode_suite.utils import BadInputError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        scaling_factor=0.5,  # not the SD default, so the test sees it is the config's
    )
    folder = tmp_path_factory.mktemp("vae") / "tiny-vae"
    vae.save_pretrained(folder)
    return folder


def _images(n=5, h=40, w=36, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, h, w, 3)) * 255).astype(np.uint8)


def test_latent_shape_from_config_without_loading(tiny_vae_dir):
    ext = VAELatentExtractor(str(tiny_vae_dir), size=32, device="cpu")
    assert ext.fields() == {"latents": ((4, 16, 16), "float32")}  # 2 blocks: factor 2
    assert "vae" not in ext.__dict__
    out = ext.transform(_images())
    assert out["latents"].shape == (5, 4, 16, 16) and out["latents"].dtype == np.float32


def test_latents_are_scaled_posterior_means(tiny_vae_dir):
    imgs = _images(3)
    out = VAELatentExtractor(str(tiny_vae_dir), size=24, device="cpu").transform(imgs)
    vae = diffusers.AutoencoderKL.from_pretrained(tiny_vae_dir).eval()
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", antialias=True)
    with torch.no_grad():
        mean = vae.encode(x.clamp(0, 1) * 2 - 1).latent_dist.mean
    assert vae.config.scaling_factor == 0.5
    np.testing.assert_allclose(out["latents"], 0.5 * mean.numpy(), atol=1e-5)


def test_batching_equivalence_and_sampling_determinism(tiny_vae_dir):
    imgs = _images(6)
    for sample in (False, True):
        a = VAELatentExtractor(str(tiny_vae_dir), size=32, sample=sample, batch_size=4)
        b = VAELatentExtractor(str(tiny_vae_dir), size=32, sample=sample, batch_size=1)
        la, lb = a.transform(imgs)["latents"], b.transform(imgs)["latents"]
        np.testing.assert_allclose(la, lb, atol=1e-5)
        np.testing.assert_array_equal(la, a.transform(imgs)["latents"])
    mean = VAELatentExtractor(str(tiny_vae_dir), size=32).transform(imgs)["latents"]
    s0 = VAELatentExtractor(str(tiny_vae_dir), size=32, sample=True).transform(imgs)["latents"]
    s1 = VAELatentExtractor(str(tiny_vae_dir), size=32, sample=True, seed=1).transform(imgs)
    assert not np.allclose(s0, mean) and not np.allclose(s0, s1["latents"])


def test_weights_id_hashes_the_local_files(tiny_vae_dir):
    ext = VAELatentExtractor(str(tiny_vae_dir), size=32)
    key = ext.cache_key()
    assert key["weights"] == "local/tiny-vae" and key["diffusers"] == diffusers.__version__
    assert all(len(h) == 64 for h in key["weights_sha256"].values())
    assert key["weights_sha256"]  # the safetensors file
    assert (
        ext.cache_key() != VAELatentExtractor(str(tiny_vae_dir), size=32, sample=True).cache_key()
    )


def test_registry_and_bad_arguments(tiny_vae_dir, tmp_path):
    ext = make_extractor("vae", model=str(tiny_vae_dir), size=32)
    assert isinstance(ext, VAELatentExtractor)
    with pytest.raises(BadInputError, match="multiple of the VAE's downsampling factor 2"):
        VAELatentExtractor(str(tiny_vae_dir), size=33).fields()
    with pytest.raises(BadInputError, match="does not exist"):
        VAELatentExtractor(str(tmp_path / "no" / "such" / "vae")).fields()
    with pytest.raises(BadInputError, match="Could not load the VAE from the local folder"):
        VAELatentExtractor(str(tmp_path)).fields()  # a folder without config.json


def test_missing_model_offline_is_a_clear_error(monkeypatch):
    # HF_HUB_OFFLINE is read once when huggingface_hub is imported; make sure it holds
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    ext = VAELatentExtractor("stabilityai/sd-vae-ft-mse", device="cpu")
    assert ext.weights_id()["weights"] == "stabilityai/sd-vae-ft-mse"
    with pytest.raises(BadInputError, match="'stabilityai/sd-vae-ft-mse' is not available offline"):
        ext.transform(_images(1))
    with pytest.raises(BadInputError, match="huggingface-cli download stabilityai/sd-vae-ft-mse"):
        ext.fields()


def test_tiny_vae_is_the_tiny_pipeline_vae():
    """model='tiny' loads the VAE folder of the tiny SD pipeline (latents decode with it)."""
    from braindecode_suite.utils.tiny import tiny_sd_img2img_folder

    ext = VAELatentExtractor("tiny", size=64, device="cpu")
    imgs = (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8)
    lat = ext.transform(imgs)["latents"]
    assert lat.shape == (2, 4, 8, 8)
    ref = diffusers.AutoencoderKL.from_pretrained(tiny_sd_img2img_folder(0) / "vae")
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        want = ref.encode(x).latent_dist.mean * ref.config.scaling_factor
    np.testing.assert_allclose(lat, want.numpy(), atol=1e-4)
