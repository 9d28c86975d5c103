"""Brain-Diffuser style reconstruction (Stable unCLIP and Versatile Diffusion) on tiny pipelines."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from braindecode_suite.reconstruction.unclip import (  # noqa: E402
    _noise_image_embeds,
    _unclip_float,
    _versatile_float,
    load_unclip_pipeline,
    load_versatile_pipeline,
    reconstruct_unclip,
    reconstruct_versatile,
)
from braindecode_suite.utils.validation import BadInputError  # noqa: E402

EMBED = 16  # tiny unCLIP image-embedding width
WIDTH = 32  # tiny Versatile Diffusion token width


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    # module fixtures run before the per-test autouse ones: keep the cache private here too
    cache = tmp_path_factory.mktemp("unclip_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BDS_CACHE_DIR", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache / "tiny"


@pytest.fixture(scope="module")
def unclip(tiny_dirs):
    """Built in code, saved, and loaded back through from_pretrained."""
    return load_unclip_pipeline("tiny", device="cpu")


@pytest.fixture(scope="module")
def versatile(tiny_dirs):
    return load_versatile_pipeline("tiny", device="cpu")


def _images(n, seed=0):
    """Smooth, distinct 64-px test images in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    out = []
    for _ in range(n):
        a, b, c = rng.uniform(-3, 3, 3)
        out.append(np.stack([(np.sin(a * xx + b * yy + c) + 1) / 2, xx * yy, 1 - yy * a / 3], -1))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def _embeds(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, EMBED)).astype(np.float32)


def _tokens(n, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 257, WIDTH)).astype(np.float32)
    text = rng.standard_normal((n, 77, WIDTH)).astype(np.float32)
    return image, text


def _vae_round_trip(pipe, images):
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
        z = pipe.vae.encode(x).latent_dist.mean
        y = pipe.vae.decode(z).sample
    return (y / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ------------------------------------------------------------------------- unCLIP
def test_unclip_shape_dtype_determinism_and_seeds(unclip):
    imgs, e = (_images(2) * 255).astype(np.uint8), _embeds(2)
    kw = dict(pipeline=unclip, num_inference_steps=3, seed=3)
    a = reconstruct_unclip(imgs, e, **kw)
    assert a.shape == (2, 64, 64, 3)
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, reconstruct_unclip(imgs, e, **kw))
    other = reconstruct_unclip(imgs, e, pipeline=unclip, num_inference_steps=3, seed=4)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 1


def test_unclip_batch_of_four_equals_four_single_calls(unclip):
    """Image i uses Generator(seed + i): one call on 4 images == 4 calls on one image each."""
    imgs, e = _images(4, seed=1), _embeds(4, seed=1)
    kw = dict(pipeline=unclip, num_inference_steps=3, noise_level=50)
    batched = _unclip_float(imgs, e, batch_size=4, seed=7, **kw)
    singles = np.concatenate(
        [_unclip_float(imgs[i : i + 1], e[i : i + 1], seed=7 + i, **kw) for i in range(4)]
    )
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    by_two = _unclip_float(imgs, e, batch_size=3, seed=7, **kw)
    np.testing.assert_allclose(by_two, batched, atol=1e-5)


@pytest.mark.parametrize("guidance_scale", [7.5, 1.0])
def test_unclip_strength_one_equals_the_pipelines_own_call(unclip, guidance_scale):
    """strength=1 ignores the init image and reproduces StableUnCLIPImg2ImgPipeline.__call__.

    This checks the whole conditioning path against diffusers itself: the
    noise-augmented image embeddings (noise_level > 0), the empty-prompt text,
    classifier-free guidance (or none at guidance_scale=1), the order in which each
    image's generator is used, the scheduler loop and the decoding.
    """
    e = _embeds(2, seed=2)
    kw = dict(
        pipeline=unclip,
        strength=1.0,
        noise_level=300,
        guidance_scale=guidance_scale,
        num_inference_steps=3,
        seed=5,
    )
    ours = _unclip_float(_images(2, seed=3), e, **kw)
    other_init = _unclip_float(_images(2, seed=4)[::-1].copy(), e, **kw)
    np.testing.assert_array_equal(ours, other_init)
    ref = unclip(
        prompt=["", ""],
        image_embeds=torch.from_numpy(e),
        noise_level=300,
        guidance_scale=guidance_scale,
        num_inference_steps=3,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(5 + i) for i in range(2)],
        output_type="np",
    ).images
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_unclip_predicted_text_embeddings_match_a_prompt(unclip):
    """prompt_embeds = the text encoder's output for a caption == passing that caption."""
    e = _embeds(1, seed=6)
    with torch.no_grad():
        c, _ = unclip.encode_prompt(["a red car"], torch.device("cpu"), 1, False)
    kw = dict(pipeline=unclip, strength=1.0, num_inference_steps=2)
    from_embeds = _unclip_float(_images(1), e, prompt_embeds=c.numpy(), **kw)
    from_text = _unclip_float(_images(1), e, prompt="a red car", **kw)
    np.testing.assert_allclose(from_embeds, from_text, atol=1e-6)
    ref = unclip(
        prompt=["a red car"],
        image_embeds=torch.from_numpy(e),
        guidance_scale=7.5,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(0)],
        output_type="np",
    ).images
    np.testing.assert_allclose(from_embeds, ref, atol=1e-5)
    empty = _unclip_float(_images(1), e, **kw)
    assert np.abs(empty - from_text).max() > 1e-3


def test_unclip_small_strength_stays_near_the_init_image(unclip):
    """strength 0.1 of 10 steps: one step from t=1, so the output follows the VAE round trip."""
    imgs, e = _images(2, seed=8), _embeds(2, seed=8)
    round_trip = _vae_round_trip(unclip, imgs)
    near = _unclip_float(imgs, e, pipeline=unclip, strength=0.1, num_inference_steps=10)
    far = _unclip_float(imgs, e, pipeline=unclip, strength=1.0, num_inference_steps=10)
    # measured on the random tiny VAE: correlation ~0.5 vs ~0.05, error ~0.11 vs ~0.19
    for i in range(2):
        assert _corr(near[i], round_trip[i]) > 0.3
        assert _corr(near[i], round_trip[i]) > _corr(far[i], round_trip[i]) + 0.2
    assert np.abs(near - round_trip).mean() < 0.8 * np.abs(far - round_trip).mean()


def test_strength_keeps_the_last_timesteps(unclip):
    """As StableDiffusionImg2ImgPipeline.get_timesteps: int(10 * 0.3) = 3 last steps run."""
    seen = []
    hook = unclip.unet.register_forward_pre_hook(
        lambda module, args: seen.append(float(args[1])), with_kwargs=False
    )
    try:
        _unclip_float(_images(1), _embeds(1), pipeline=unclip, strength=0.3, num_inference_steps=10)
    finally:
        hook.remove()
    unclip.scheduler.set_timesteps(10)
    # DDIM, 1000 training steps, steps_offset=1: 901, 801, ..., 1
    assert seen == [float(t) for t in unclip.scheduler.timesteps[7:]] == [201.0, 101.0, 1.0]


def test_noise_augmentation_matches_the_pipeline_and_the_formula(unclip):
    e = torch.from_numpy(_embeds(3, seed=9))
    level = 250
    gens = [torch.Generator().manual_seed(11 + i) for i in range(3)]
    with torch.no_grad():
        ours = _noise_image_embeds(unclip, e, level, gens)
        # the pipeline's method, one image and one fresh generator at a time
        per_image = torch.cat(
            [
                unclip.noise_image_embeddings(
                    e[i : i + 1], level, generator=torch.Generator().manual_seed(11 + i)
                )
                for i in range(3)
            ]
        )
    torch.testing.assert_close(ours, per_image)
    # by hand: normalise, q(x_t | x_0) of the squared-cosine schedule, unnormalise,
    # then append the sinusoidal embedding (cos first) of the noise level
    noise = torch.cat(
        [torch.randn(1, EMBED, generator=torch.Generator().manual_seed(11 + i)) for i in range(3)]
    )
    mean, std = unclip.image_normalizer.mean.detach(), unclip.image_normalizer.std.detach()

    # squaredcos_cap_v2: alpha_bar(t) = cos((t + 0.008) / 1.008 * pi / 2) ** 2
    def alpha_bar_fn(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar_fn((t + 1) / 1000) / alpha_bar_fn(t / 1000), 0.999)
        for t in range(level + 1)
    ]
    alpha_bar = math.prod(1 - b for b in betas)
    scaled = (e - mean) / std
    noised = (math.sqrt(alpha_bar) * scaled + math.sqrt(1 - alpha_bar) * noise) * std + mean
    half = EMBED // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angle = level * freqs
    level_emb = torch.cat([torch.cos(angle), torch.sin(angle)]).expand(3, -1)
    torch.testing.assert_close(ours, torch.cat([noised, level_emb], 1), atol=1e-5, rtol=1e-5)
    # noise level 0 still draws (and uses almost none of) the noise
    with torch.no_grad():
        zero = _noise_image_embeds(unclip, e, 0, gens)
    assert torch.allclose(zero[:, :EMBED], e, atol=0.05)


def test_unclip_bad_inputs(unclip):
    imgs, e = _images(2), _embeds(2)
    kw = dict(pipeline=unclip, num_inference_steps=2)
    with pytest.raises(BadInputError, match="image_embeds must have 16 columns.*got 12"):
        reconstruct_unclip(imgs, e[:, :12], **kw)
    with pytest.raises(BadInputError, match="image_embeds must have one row per image.*got 1"):
        reconstruct_unclip(imgs, e[:1], **kw)
    with pytest.raises(BadInputError, match="image_embeds must have shape"):
        reconstruct_unclip(imgs, e[0], **kw)
    with pytest.raises(BadInputError, match=r"prompt_embeds must have shape \(n_images, 77, 32\)"):
        reconstruct_unclip(imgs, e, prompt_embeds=np.zeros((2, 77, 16)), **kw)
    with pytest.raises(BadInputError, match="prompt or prompt_embeds, not both"):
        reconstruct_unclip(imgs, e, prompt_embeds=np.zeros((2, 77, 32)), prompt="x", **kw)
    with pytest.raises(BadInputError, match=r"noise_level must be in \[0, 999\].*1000"):
        reconstruct_unclip(imgs, e, noise_level=1000, **kw)
    with pytest.raises(BadInputError, match="strength must be in"):
        reconstruct_unclip(imgs, e, strength=0, **kw)
    with pytest.raises(BadInputError, match="strength \\* num_inference_steps must be >= 1"):
        reconstruct_unclip(imgs, e, strength=0.1, **kw)
    with pytest.raises(BadInputError, match="init_images must have shape"):
        reconstruct_unclip(imgs[..., 0], e, **kw)
    with pytest.raises(BadInputError, match="multiples of 8.*60 x 64"):
        reconstruct_unclip(imgs[:, :60], e, **kw)
    with pytest.raises(BadInputError, match="batch_size"):
        reconstruct_unclip(imgs, e, batch_size=0, **kw)
    with pytest.raises(BadInputError, match="pipeline must be a diffusers StableUnCLIP"):
        reconstruct_unclip(imgs, e, pipeline=None)


# ------------------------------------------------------------ Versatile Diffusion
def test_versatile_shape_determinism_seeds_and_batching(versatile):
    imgs = (_images(4, seed=10) * 255).astype(np.uint8)
    it, tt = _tokens(4, seed=10)
    kw = dict(pipeline=versatile, num_inference_steps=3)
    a = reconstruct_versatile(imgs, it, tt, seed=2, **kw)
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, reconstruct_versatile(imgs, it, tt, seed=2, **kw))
    other = reconstruct_versatile(imgs, it, tt, seed=3, **kw)
    assert np.abs(a.astype(int) - other.astype(int)).mean() > 1
    batched = _versatile_float(imgs, it, tt, seed=2, batch_size=4, **kw)
    singles = np.concatenate(
        [
            _versatile_float(imgs[i : i + 1], it[i : i + 1], tt[i : i + 1], seed=2 + i, **kw)
            for i in range(4)
        ]
    )
    np.testing.assert_allclose(batched, singles, atol=1e-5)


def test_versatile_strength_one_equals_the_pipelines_own_call(versatile):
    """Tokens from the pipeline's encoders at strength=1 == its dual-guided __call__."""
    from PIL import Image

    pictures = [Image.fromarray((im * 255).astype(np.uint8)) for im in _images(2, seed=12)]
    captions = ["a red car", "two dogs on a beach"]
    with torch.no_grad():
        text = versatile._encode_text_prompt(captions, torch.device("cpu"), 1, False)
        image = versatile._encode_image_prompt(pictures, torch.device("cpu"), 1, False)
    assert tuple(image.shape) == (2, 257, WIDTH) and tuple(text.shape) == (2, 77, WIDTH)
    kw = dict(pipeline=versatile, strength=1.0, mix_ratio=0.4, num_inference_steps=3, seed=4)
    ours = _versatile_float(_images(2, seed=13), image.numpy(), text.numpy(), **kw)
    other_init = _versatile_float(_images(2, seed=14), image.numpy(), text.numpy(), **kw)
    np.testing.assert_array_equal(ours, other_init)
    ref = versatile(
        prompt=captions,
        image=pictures,
        text_to_image_strength=0.4,
        num_inference_steps=3,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(4 + i) for i in range(2)],
        output_type="np",
    ).images
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_versatile_mix_ratio_weighs_text_against_image(versatile):
    """mix_ratio = weight of the text branch: 1 ignores the image tokens, 0 the text tokens."""
    imgs = _images(1, seed=15)
    it, tt = _tokens(1, seed=15)
    it2, tt2 = _tokens(1, seed=16)
    kw = dict(pipeline=versatile, num_inference_steps=2, strength=0.5)
    text_only = _versatile_float(imgs, it, tt, mix_ratio=1.0, **kw)
    np.testing.assert_allclose(
        _versatile_float(imgs, it2, tt, mix_ratio=1.0, **kw), text_only, atol=1e-6
    )
    assert np.abs(_versatile_float(imgs, it, tt2, mix_ratio=1.0, **kw) - text_only).max() > 1e-3
    image_only = _versatile_float(imgs, it, tt, mix_ratio=0.0, **kw)
    np.testing.assert_allclose(
        _versatile_float(imgs, it, tt2, mix_ratio=0.0, **kw), image_only, atol=1e-6
    )
    assert np.abs(_versatile_float(imgs, it2, tt, mix_ratio=0.0, **kw) - image_only).max() > 1e-3
    # guidance_scale=1: the conditional branch only
    plain = reconstruct_versatile(imgs, it, tt, guidance_scale=1.0, **kw)
    assert plain.shape == (1, 64, 64, 3)


def test_versatile_small_strength_stays_near_the_init_image(versatile):
    imgs = _images(2, seed=17)
    it, tt = _tokens(2, seed=17)
    round_trip = _vae_round_trip(versatile, imgs)
    kw = dict(pipeline=versatile, num_inference_steps=10)
    near = _versatile_float(imgs, it, tt, strength=0.1, **kw)
    far = _versatile_float(imgs, it, tt, strength=1.0, **kw)
    for i in range(2):
        assert _corr(near[i], round_trip[i]) > 0.3
        assert _corr(near[i], round_trip[i]) > _corr(far[i], round_trip[i]) + 0.2
    assert np.abs(near - round_trip).mean() < 0.8 * np.abs(far - round_trip).mean()


def test_versatile_bad_inputs(versatile):
    imgs = _images(2)
    it, tt = _tokens(2)
    kw = dict(pipeline=versatile, num_inference_steps=2)
    with pytest.raises(BadInputError, match=r"image_tokens must have shape \(n_images, 257, 32\)"):
        reconstruct_versatile(imgs, it[:, :256], tt, **kw)
    with pytest.raises(BadInputError, match=r"text_tokens must have shape \(n_images, 77, 32\)"):
        reconstruct_versatile(imgs, it, tt[..., :16], **kw)
    with pytest.raises(BadInputError, match="text_tokens must have one row per image"):
        reconstruct_versatile(imgs, it, tt[:1], **kw)
    with pytest.raises(BadInputError, match=r"mix_ratio must be in \[0, 1\], got 1.5"):
        reconstruct_versatile(imgs, it, tt, mix_ratio=1.5, **kw)
    with pytest.raises(BadInputError, match="strength must be in"):
        reconstruct_versatile(imgs, it, tt, strength=1.2, **kw)
    with pytest.raises(BadInputError, match="pipeline must be a diffusers VersatileDiffusion"):
        reconstruct_versatile(imgs, it, tt, pipeline=object())


# ------------------------------------------------------------------------ loaders
def test_missing_weights_offline_say_how_to_download():
    with pytest.raises(BadInputError, match="someone/not-downloaded.*huggingface-cli download"):
        load_unclip_pipeline("someone/not-downloaded", device="cpu")
    with pytest.raises(BadInputError, match="someone/not-downloaded.*huggingface-cli download"):
        load_versatile_pipeline("someone/not-downloaded", device="cpu")
    with pytest.raises(BadInputError, match="tiny:<seed>"):
        load_unclip_pipeline("tiny:x", device="cpu")


def test_tiny_pipelines_are_saved_and_reloaded(tiny_dirs, unclip, versatile):
    names = sorted(p.name for p in tiny_dirs.iterdir())
    assert any(n.startswith("sd-unclip-e16-s0-v") for n in names), names
    assert any(n.startswith("versatile-d32-s0-v") for n in names), names
    assert unclip.unet.config.projection_class_embeddings_input_dim == 2 * EMBED
    assert unclip.image_encoder.config.projection_dim == EMBED
    # the text UNet's attention blocks were merged into dual transformers, then dropped
    assert versatile.image_unet.config.dual_cross_attention
    assert versatile.text_unet is None
