"""Depth-ControlNet img2img (Takagi & Nishimoto, multiple decoded inputs) on a tiny pipeline."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from braindecode_suite.reconstruction.controlnet import (  # noqa: E402
    _controlnet_img2img_float,
    load_controlnet_img2img_pipeline,
    reconstruct_img2img_depth,
    tiny_controlnet_folder,
)
from braindecode_suite.utils.tiny import tiny_sd_components  # noqa: E402
from braindecode_suite.utils.validation import BadInputError  # noqa: E402

STEPS = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_home")


@pytest.fixture(scope="module")
def pipe(tiny_home):
    import huggingface_hub.constants

    # module fixtures run before the per-test private dirs: point the tiny cache here
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDS_CACHE_DIR", str(tiny_home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        return load_controlnet_img2img_pipeline("tiny", device="cpu")


@pytest.fixture(scope="module")
def plain_pipe(tiny_home):
    """The plain diffusers img2img pipeline built from the same tiny components."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDS_CACHE_DIR", str(tiny_home))
        p = diffusers.StableDiffusionImg2ImgPipeline(
            **tiny_sd_components(0),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    p.set_progress_bar_config(disable=True)
    return p


def _inputs(n, seed=0, depth_size=16):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4, 8, 8)).astype(np.float32)
    c = rng.standard_normal((n, 77, 32)).astype(np.float32)
    d = rng.random((n, depth_size, depth_size)).astype(np.float32)
    return z, c, d


def test_tiny_pipeline_parts(pipe):
    assert isinstance(pipe, diffusers.StableDiffusionControlNetImg2ImgPipeline)
    cfg = pipe.controlnet.config
    assert tuple(cfg.block_out_channels) == (32, 64) and cfg.cross_attention_dim == 32
    assert cfg.norm_num_groups == 8 and cfg.layers_per_block == 1
    assert pipe.unet.config.cross_attention_dim == 32 and pipe.vae_scale_factor == 8


def test_shape_dtype_determinism_and_seeds(pipe):
    z, c, d = _inputs(2)
    kw = dict(pipeline=pipe, num_inference_steps=STEPS, seed=3)
    a = reconstruct_img2img_depth(z, c, d, **kw)
    assert a.shape == (2, 64, 64, 3) and a.dtype == np.uint8  # 8×8 latents -> 64 px
    np.testing.assert_array_equal(a, reconstruct_img2img_depth(z, c, d, **kw))
    other = reconstruct_img2img_depth(z, c, d, pipeline=pipe, num_inference_steps=STEPS, seed=4)
    assert not np.array_equal(a, other)


def test_batch_of_4_equals_4_single_calls(pipe):
    z, c, d = _inputs(4, seed=1)
    kw = dict(pipeline=pipe, num_inference_steps=STEPS, seed=0)
    f4 = _controlnet_img2img_float(z, c, d, batch_size=4, **kw)
    singles = [
        _controlnet_img2img_float(z[i : i + 1], c[i : i + 1], d[i : i + 1], **{**kw, "seed": i})
        for i in range(4)
    ]
    np.testing.assert_allclose(f4, np.concatenate(singles), atol=1e-5)
    u4 = reconstruct_img2img_depth(z, c, d, batch_size=4, **kw)
    u1 = reconstruct_img2img_depth(z, c, d, batch_size=1, **kw)
    assert np.abs(u4.astype(int) - u1.astype(int)).max() <= 1


@pytest.mark.parametrize("guidance_scale", [1.0, 5.0])
def test_scale_zero_is_the_plain_img2img_pipeline(pipe, plain_pipe, guidance_scale):
    z, c, d = _inputs(3, seed=2)
    ours = _controlnet_img2img_float(
        z,
        c,
        d,
        pipeline=pipe,
        controlnet_conditioning_scale=0.0,
        guidance_scale=guidance_scale,
        num_inference_steps=STEPS,
        seed=5,
    )
    # the reference, straight from diffusers: VAE-decoded init images, same generators
    vae = plain_pipe.vae
    with torch.no_grad():
        init = vae.decode(torch.from_numpy(z) / vae.config.scaling_factor).sample
    ct = torch.from_numpy(c)
    kwargs = {"negative_prompt_embeds": torch.zeros_like(ct)} if guidance_scale > 1 else {}
    ref = plain_pipe(
        prompt_embeds=ct,
        image=(init / 2 + 0.5).clamp(0, 1),
        strength=0.75,
        guidance_scale=guidance_scale,
        num_inference_steps=STEPS,
        generator=[torch.Generator().manual_seed(5 + i) for i in range(3)],
        output_type="np",
        **kwargs,
    ).images
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    with_control = _controlnet_img2img_float(
        z, c, d, pipeline=pipe, guidance_scale=guidance_scale, num_inference_steps=STEPS, seed=5
    )
    assert np.abs(with_control - ref).max() > 0.05  # the ControlNet does act at scale 1


def test_depth_maps_steer_the_output(pipe):
    z, c, d = _inputs(2, seed=3)
    kw = dict(pipeline=pipe, num_inference_steps=STEPS, seed=0)
    near = _controlnet_img2img_float(z, c, d, **kw)
    far = _controlnet_img2img_float(z, c, 1 - d, **kw)
    assert np.abs(near - far).mean() > 1e-3
    # at scale 0 the depth maps are ignored
    off = dict(kw, controlnet_conditioning_scale=0.0)
    np.testing.assert_array_equal(
        _controlnet_img2img_float(z, c, d, **off), _controlnet_img2img_float(z, c, 1 - d, **off)
    )
    # depth maps of any resolution are resized to the output: a constant map is the same
    # control image at 16 px and 64 px
    flat16 = _controlnet_img2img_float(z, c, np.full((2, 16, 16), 0.3, np.float32), **kw)
    flat64 = _controlnet_img2img_float(z, c, np.full((2, 64, 64), 0.3, np.float32), **kw)
    np.testing.assert_allclose(flat16, flat64, atol=1e-6)
    # a stronger scale moves the output further from plain img2img
    plain = _controlnet_img2img_float(z, c, d, **off)
    half = _controlnet_img2img_float(z, c, d, controlnet_conditioning_scale=0.5, **kw)
    assert 0 < np.abs(half - plain).mean() < np.abs(near - plain).mean()


def test_bad_inputs(pipe):
    z, c, d = _inputs(2)
    kw = dict(pipeline=pipe, num_inference_steps=1)
    with pytest.raises(BadInputError, match="depth_maps must have one row per image.*got 1.*2"):
        reconstruct_img2img_depth(z, c, d[:1], **kw)
    with pytest.raises(BadInputError, match="prompt_embeds must have one row per image.*got 1"):
        reconstruct_img2img_depth(z, c[:1], d, **kw)
    with pytest.raises(
        BadInputError, match=r"depth_maps must have shape \(n_images, height, width"
    ):
        reconstruct_img2img_depth(z, c, d[:, None], **kw)
    with pytest.raises(BadInputError, match=r"depth_maps must be in \[0, 1\]"):
        reconstruct_img2img_depth(z, c, d * 3, **kw)
    with pytest.raises(BadInputError, match="depth_maps contains NaN"):
        reconstruct_img2img_depth(z, c, np.full_like(d, np.nan), **kw)
    with pytest.raises(BadInputError, match="init_latents must have 4 channels.*got 3"):
        reconstruct_img2img_depth(z[:, :3], c, d, **kw)
    with pytest.raises(BadInputError, match="prompt_embeds last dimension must be 32.*got 16"):
        reconstruct_img2img_depth(z, c[..., :16], d, **kw)
    with pytest.raises(BadInputError, match="controlnet_conditioning_scale"):
        reconstruct_img2img_depth(z, c, d, controlnet_conditioning_scale=-1, **kw)
    with pytest.raises(BadInputError, match="strength"):
        reconstruct_img2img_depth(z, c, d, strength=0, **kw)
    with pytest.raises(BadInputError, match="batch_size"):
        reconstruct_img2img_depth(z, c, d, batch_size=0, **kw)
    with pytest.raises(BadInputError, match="pipeline must be"):
        reconstruct_img2img_depth(z, c, d, pipeline=None)


def test_tiny_controlnet_is_rebuilt_identically(tmp_path, monkeypatch):
    first = tiny_controlnet_folder(0)
    monkeypatch.setenv("BDS_CACHE_DIR", str(tmp_path))
    second = tiny_controlnet_folder(0)
    assert first != second
    a = (first / "diffusion_pytorch_model.safetensors").read_bytes()
    assert a == (second / "diffusion_pytorch_model.safetensors").read_bytes()


def test_tiny_pairing_errors():
    with pytest.raises(BadInputError, match="controlnet must be 'tiny:0'"):
        load_controlnet_img2img_pipeline("tiny", controlnet="tiny:1", device="cpu")
    with pytest.raises(BadInputError, match="only fits model_id_or_path='tiny'"):
        load_controlnet_img2img_pipeline("someone/sd", controlnet="tiny", device="cpu")


def test_load_missing_weights_offline():
    # the ControlNet loads first: its absence is reported with how to get it
    with pytest.raises(BadInputError, match="ControlNet 'lllyasviel/sd-controlnet-depth'"):
        load_controlnet_img2img_pipeline("runwayml/stable-diffusion-v1-5", device="cpu")
    with pytest.raises(BadInputError, match="huggingface-cli download lllyasviel/sd-controlnet-de"):
        load_controlnet_img2img_pipeline(device="cpu")
    # a local ControlNet but a missing Stable Diffusion
    local = tiny_controlnet_folder(0)
    with pytest.raises(BadInputError, match="huggingface-cli download someone/not-downloaded"):
        load_controlnet_img2img_pipeline("someone/not-downloaded", controlnet=local, device="cpu")
