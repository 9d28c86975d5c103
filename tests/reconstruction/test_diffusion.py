"""Takagi & Nishimoto style img2img reconstruction with a tiny random pipeline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from braindecode_suite.reconstruction import (  # noqa: E402
    load_img2img_pipeline,
    reconstruct_img2img,
)
from braindecode_suite.reconstruction.diffusion import _img2img_float  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_pipe():
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        steps_offset=1,
    )
    pipe = StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=None,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4, 32, 32)).astype(np.float32)
    c = rng.standard_normal((n, 77, 32)).astype(np.float32)
    return z, c


def test_shape_dtype_and_determinism(tiny_pipe):
    z, c = _inputs(2)
    kw = dict(pipeline=tiny_pipe, num_inference_steps=2, seed=3)
    a = reconstruct_img2img(z, c, **kw)
    # the tiny VAE halves once per extra block: 32 latents -> 64 pixels
    assert a.shape == (2, 64, 64, 3)
    assert a.dtype == np.uint8
    b = reconstruct_img2img(z, c, **kw)
    np.testing.assert_array_equal(a, b)
    other = reconstruct_img2img(z, c, pipeline=tiny_pipe, num_inference_steps=2, seed=4)
    assert not np.array_equal(a, other)


def test_batch_size_does_not_change_results(tiny_pipe):
    z, c = _inputs(3, seed=1)
    kw = dict(pipeline=tiny_pipe, num_inference_steps=2, seed=0)
    f4 = _img2img_float(z, c, batch_size=4, **kw)
    f1 = _img2img_float(z, c, batch_size=1, **kw)
    np.testing.assert_allclose(f4, f1, atol=1e-5)
    u4 = reconstruct_img2img(z, c, batch_size=4, **kw)
    u1 = reconstruct_img2img(z, c, batch_size=1, **kw)
    assert np.abs(u4.astype(int) - u1.astype(int)).max() <= 1


def test_no_guidance_and_explicit_negative(tiny_pipe):
    z, c = _inputs(1, seed=2)
    out = reconstruct_img2img(z, c, pipeline=tiny_pipe, num_inference_steps=2, guidance_scale=1.0)
    assert out.shape == (1, 64, 64, 3)
    zeros = reconstruct_img2img(z, c, pipeline=tiny_pipe, num_inference_steps=2)
    explicit = reconstruct_img2img(
        z, c, pipeline=tiny_pipe, num_inference_steps=2, negative_prompt_embeds=np.zeros((77, 32))
    )
    np.testing.assert_array_equal(zeros, explicit)


def test_bad_inputs(tiny_pipe):
    z, c = _inputs(2)
    with pytest.raises(BadInputError, match="prompt_embeds.*got 1 rows.*expected 2"):
        reconstruct_img2img(z, c[:1], pipeline=tiny_pipe, num_inference_steps=2)
    with pytest.raises(BadInputError, match="init_latents must have 4 channels.*got 3"):
        reconstruct_img2img(z[:, :3], c, pipeline=tiny_pipe, num_inference_steps=2)
    with pytest.raises(BadInputError, match="prompt_embeds last dimension must be 32.*got 16"):
        reconstruct_img2img(z, c[..., :16], pipeline=tiny_pipe, num_inference_steps=2)
    with pytest.raises(BadInputError, match="init_latents must have shape"):
        reconstruct_img2img(z[0], c, pipeline=tiny_pipe)
    with pytest.raises(BadInputError, match="strength"):
        reconstruct_img2img(z, c, pipeline=tiny_pipe, strength=0)
    with pytest.raises(BadInputError, match="batch_size"):
        reconstruct_img2img(z, c, pipeline=tiny_pipe, batch_size=0)
    with pytest.raises(BadInputError, match="pipeline must be"):
        reconstruct_img2img(z, c, pipeline=None)


def test_load_missing_pipeline_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BadInputError, match="runwayml/stable-diffusion-v1-5"):
        load_img2img_pipeline("runwayml/stable-diffusion-v1-5", device="cpu")


def test_init_images_equal_decoded_latents_route(tiny_pipe):
    """init_images = the VAE decode of init_latents gives the same reconstruction."""
    z, c = _inputs(2, seed=5)
    kw = dict(pipeline=tiny_pipe, num_inference_steps=2, seed=1)
    from_latents = _img2img_float(z, c, **kw)
    with torch.no_grad():
        dec = tiny_pipe.vae.decode(torch.from_numpy(z) / tiny_pipe.vae.config.scaling_factor)
    imgs = (dec.sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    from_images = _img2img_float(None, c, init_images=imgs, **kw)
    np.testing.assert_allclose(from_images, from_latents, atol=1e-4)
    u8 = reconstruct_img2img(None, c, init_images=(imgs * 255).astype(np.uint8), **kw)
    assert u8.shape == (2, 64, 64, 3)


def test_init_source_errors(tiny_pipe):
    z, c = _inputs(2)
    imgs = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(BadInputError, match="exactly one of init_latents.*both"):
        reconstruct_img2img(z, c, init_images=imgs, pipeline=tiny_pipe)
    with pytest.raises(BadInputError, match="exactly one of init_latents.*neither"):
        reconstruct_img2img(None, c, pipeline=tiny_pipe)
    with pytest.raises(BadInputError, match=r"init_images must have shape.*\(2, 64, 64\)"):
        reconstruct_img2img(None, c, init_images=imgs[..., 0], pipeline=tiny_pipe)


def test_tiny_pipeline_by_name_with_image_token_width():
    """'tiny' builds, saves and reloads through from_pretrained; the UNet width is configurable."""
    pipe = load_img2img_pipeline("tiny", device="cpu", cross_attention_dim=24)
    assert pipe.unet.config.cross_attention_dim == 24
    again = load_img2img_pipeline("tiny", device="cpu", cross_attention_dim=24)
    for a, b in zip(pipe.unet.parameters(), again.unet.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    tokens = np.random.default_rng(0).standard_normal((1, 5, 24)).astype(np.float32)
    out = reconstruct_img2img(
        None,
        tokens,
        init_images=np.full((1, 64, 64, 3), 128, np.uint8),
        pipeline=pipe,
        num_inference_steps=2,
    )
    assert out.shape == (1, 64, 64, 3)
    with pytest.raises(BadInputError, match="tiny:<seed>"):
        load_img2img_pipeline("tiny:x", device="cpu")
