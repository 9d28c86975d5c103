"""Brain-Diffuser style reconstruction (Ozcelik & VanRullen 2023).

Brain-Diffuser reconstructs an image in two stages. A *low-level* init image (in
the paper: VDVAE latents predicted from fMRI, decoded to a blurry 64-px picture;
here any coarse image, e.g. decoded from predicted Stable Diffusion VAE latents)
is encoded by the diffusion model's VAE, noised to ``strength`` of the schedule
and then denoised (SDEdit / "img2img") while conditioned on *predicted* CLIP
embeddings. Two routes are provided:

* **Stable unCLIP** (:func:`load_unclip_pipeline`, :func:`reconstruct_unclip`),
  the maintained route: :class:`diffusers.StableUnCLIPImg2ImgPipeline`
  (``stabilityai/stable-diffusion-2-1-unclip``) whose UNet takes the pooled,
  projected CLIP image embedding (noise-augmented by ``noise_level``) through its
  class-embedding input, and text tokens through cross-attention.
* **Versatile Diffusion** (:func:`load_versatile_pipeline`,
  :func:`reconstruct_versatile`), what the paper used:
  :class:`diffusers.VersatileDiffusionDualGuidedPipeline`
  (``shi-labs/versatile-diffusion``), whose dual-guided UNet cross-attends to
  predicted CLIP-vision tokens (257 × 768) and CLIP-text tokens (77 × 768) with
  separate attention blocks and mixes their outputs: ``mix_ratio`` is the weight
  of the text branch (the paper's ``mixing = 0.4``; its VD sampler is called with
  ``mixed_ratio = 1 - mixing`` on the vision branch, which is the same thing).

Why the denoising loop is written here
--------------------------------------
Neither diffusers pipeline has an init image: ``StableUnCLIPImg2ImgPipeline``
calls its ``image`` argument "img2img" but only uses the image for its CLIP
embedding, and both pipelines' ``__call__`` always start from pure noise
(``prepare_latents`` = ``randn * init_noise_sigma``) with no ``strength``. So
:func:`_sdedit_loop` reimplements the few steps of
``StableDiffusionImg2ImgPipeline`` that are missing, from the pipelines' own
components and methods:

1. init latents ``vae.encode(2 x - 1).latent_dist.mean * scaling_factor``
   (the distribution's mean, so no randomness is spent on it);
2. ``scheduler.set_timesteps(num_inference_steps)`` and keeping the last
   ``int(num_inference_steps * strength)`` timesteps, exactly as
   ``StableDiffusionImg2ImgPipeline.get_timesteps`` (including
   ``scheduler.set_begin_index``);
3. ``scheduler.add_noise(init_latents, noise, first_kept_timestep)``; with
   ``strength=1.0`` the init image is ignored and the latents are
   ``noise * scheduler.init_noise_sigma``, as the pipelines' ``prepare_latents``
   (so ``strength=1.0`` reproduces the pipelines' own ``__call__``);
4. the pipelines' denoising loop: ``scale_model_input``, the UNet on the
   unconditional and conditional inputs stacked (classifier-free guidance when
   ``guidance_scale > 1``), ``scheduler.step`` with
   ``pipeline.prepare_extra_step_kwargs``; then ``vae.decode`` and
   ``pipeline.image_processor.postprocess``.

The conditioning is built as the pipelines build it: unCLIP encodes the text with
``pipeline.encode_prompt`` (the empty prompt ``""`` unless predicted
``prompt_embeds`` are given; the unconditional text is the empty prompt),
noise-augments the image embeddings with ``pipeline.noise_image_embeddings`` and
uses all-zero image embeddings as unconditional class labels (as
``_encode_image``). Versatile Diffusion puts text tokens before image tokens
(``("text", "image")`` for ``set_transformer_params``) and takes the
unconditional tokens from the pipeline's encoders on the empty prompt and on a
uniform grey image (as its ``_encode_text_prompt`` / ``_encode_image_prompt``).

Randomness: image ``i`` uses its own ``torch.Generator().manual_seed(seed + i)``
(CPU), drawn in the pipelines' order (unCLIP: image-embedding noise first, then
the latent noise, then any scheduler noise), so the output of an image does not
depend on ``batch_size`` and equals the pipeline's own ``__call__`` at
``strength=1.0``.

The Versatile Diffusion pipeline is deprecated in diffusers and, in 0.42, cannot
be used as shipped: :func:`load_versatile_pipeline` loads its components one by
one and patches its dual transformers (see there); with that, its own
``__call__`` works too, and the tests compare against it.

Both routes take predicted features rather than one feature array, so they are
not registered in :data:`braindecode_suite.reconstruction.image.METHODS`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import numpy as np

from ..utils.devices import resolve_device, resolve_dtype
from ..utils.hub import explain_missing_weights
from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.tiny import (
    TINY_SD_HIDDEN,
    TINY_VERSION,
    clip_tokenizer,
    is_tiny,
    parse_tiny,
    tiny_cache_dir,
    tiny_clip_image_processor,
    tiny_clip_text_config,
    tiny_clip_vision_config,
    tiny_sd_components,
    tiny_unet_config,
)
from ..utils.validation import BadInputError, check_positive_int
from ._common import (
    as_tensor,
    check_pipeline,
    check_rows,
    check_sampling,
    generators,
    init_images_tensor,
    to_uint8,
)

__all__ = [
    "DEFAULT_UNCLIP_MODEL",
    "DEFAULT_VERSATILE_MODEL",
    "load_unclip_pipeline",
    "load_versatile_pipeline",
    "reconstruct_unclip",
    "reconstruct_versatile",
]

DEFAULT_UNCLIP_MODEL = "stabilityai/stable-diffusion-2-1-unclip"
DEFAULT_VERSATILE_MODEL = "shi-labs/versatile-diffusion"

#: width of the tiny unCLIP CLIP image embedding
TINY_UNCLIP_EMBED_DIM = 16
#: Versatile Diffusion's dual transformer expects this many image tokens
#: (``set_transformer_params`` hard-codes it: CLIP ViT-L/14 at 224 px = 16 × 16 + 1)
VD_IMAGE_TOKENS = 257


# ----------------------------------------------------------------------- loaders
def _tiny_unclip_folder(seed: int, embed_dim: int = TINY_UNCLIP_EMBED_DIM):
    """Build (once) and save a tiny random ``StableUnCLIPImg2ImgPipeline``."""
    folder = tiny_cache_dir() / f"sd-unclip-e{embed_dim}-s{seed}-v{TINY_VERSION}"
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPVisionModelWithProjection

    parts = tiny_sd_components(seed, TINY_SD_HIDDEN)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 10)
        unet = UNet2DConditionModel(
            **tiny_unet_config(TINY_SD_HIDDEN),
            # the noised image embedding and its noise-level embedding, concatenated
            class_embed_type="projection",
            projection_class_embeddings_input_dim=2 * embed_dim,
        )
        torch.manual_seed(seed + 11)
        image_encoder = CLIPVisionModelWithProjection(tiny_clip_vision_config(embed_dim))
        torch.manual_seed(seed + 12)
        normalizer = StableUnCLIPImageNormalizer(embedding_dim=embed_dim)
        with torch.no_grad():
            # not the identity, so that scaling / unscaling is exercised
            normalizer.mean.copy_(0.1 * torch.randn(1, embed_dim))
            normalizer.std.copy_(0.5 + torch.rand(1, embed_dim))
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=tiny_clip_image_processor(),
        image_encoder=image_encoder,
        image_normalizer=normalizer,
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        unet=unet,
        scheduler=parts["scheduler"],
        vae=parts["vae"],
    )
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def load_unclip_pipeline(
    model_id_or_path=DEFAULT_UNCLIP_MODEL,
    device: str = "auto",
    dtype: str = "float32",
):
    """Load a :class:`diffusers.StableUnCLIPImg2ImgPipeline`.

    Parameters
    ----------
    model_id_or_path : str or path
        Hub id (default ``"stabilityai/stable-diffusion-2-1-unclip"``, CLIP ViT-H
        image embeddings of width 1024; ``"...-unclip-small"`` takes ViT-L, 768), a
        local folder, or ``"tiny"`` / ``"tiny:<seed>"`` for a random tiny pipeline
        built in code (image embeddings of width 16, 64-px images; for offline
        demos and tests).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.

    Returns
    -------
    pipeline : diffusers.StableUnCLIPImg2ImgPipeline

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    from diffusers import StableUnCLIPImg2ImgPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if is_tiny(model_id_or_path):
        logger.info("unCLIP pipeline %r: random weights (tiny model).", model_id_or_path)
        model_id_or_path = _tiny_unclip_folder(parse_tiny(model_id_or_path))
    with explain_missing_weights("Stable unCLIP pipeline", model_id_or_path):
        pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(model_id_or_path), dtype=torch_dtype)
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _tiny_versatile_folder(seed: int, width: int = TINY_SD_HIDDEN):
    """Build (once) and save a tiny random universal Versatile Diffusion checkpoint.

    It is saved as a ``VersatileDiffusionPipeline`` (separate image and text UNets,
    like ``shi-labs/versatile-diffusion``), so loading it as a dual-guided pipeline
    runs the same conversion to dual attention as the real weights.
    """
    folder = tiny_cache_dir() / f"versatile-d{width}-s{seed}-v{TINY_VERSION}"
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import VersatileDiffusionPipeline
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (
        UNetFlatConditionModel,
    )
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    # vae, image UNet (cross_attention_dim = token width) and scheduler of tiny SD
    parts = tiny_sd_components(seed, width)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 20)
        # same blocks and widths as the image UNet: its attention blocks are taken
        # into the image UNet's dual transformers
        text_unet = UNetFlatConditionModel(**tiny_unet_config(width, flat=True))
        torch.manual_seed(seed + 21)
        text_encoder = CLIPTextModelWithProjection(tiny_clip_text_config(32, projection_dim=width))
        torch.manual_seed(seed + 22)
        # 32 px / 2 px patches: 16 × 16 + 1 = 257 tokens, like ViT-L/14 at 224 px
        image_encoder = CLIPVisionModelWithProjection(tiny_clip_vision_config(width, patch_size=2))
    pipe = VersatileDiffusionPipeline(
        tokenizer=clip_tokenizer(),
        image_feature_extractor=tiny_clip_image_processor(),
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        image_unet=parts["unet"],
        text_unet=text_unet,
        vae=parts["vae"],
        scheduler=parts["scheduler"],
    )
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def _accept_encoder_attention_mask(unet) -> int:
    """Let the UNet's ``DualTransformer2DModel`` blocks take ``encoder_attention_mask``.

    The UNet's cross-attention blocks call every transformer with
    ``encoder_attention_mask=...``, which ``DualTransformer2DModel.forward`` does not
    accept (diffusers issue #13651), so the dual-guided UNet, and the pipeline's own
    ``__call__``, fail with a ``TypeError``. The mask is always None here (the
    pipeline passes none), and the dual transformer ignores masks anyway, so the
    blocks are given a subclass whose ``forward`` drops it. Returns the number of
    blocks changed (0 on a diffusers version that accepts the keyword).
    """
    import inspect

    from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel

    if "encoder_attention_mask" in inspect.signature(DualTransformer2DModel.forward).parameters:
        return 0
    accepting = _dual_transformer_subclass()
    changed = 0
    for module in unet.modules():
        if type(module) is DualTransformer2DModel:
            module.__class__ = accepting
            changed += 1
    return changed


@functools.cache
def _dual_transformer_subclass():
    from diffusers.models.transformers.dual_transformer_2d import DualTransformer2DModel

    class DualTransformer2DAcceptingMask(DualTransformer2DModel):
        """``DualTransformer2DModel`` whose ``forward`` accepts ``encoder_attention_mask``."""

        def forward(self, hidden_states, encoder_hidden_states, *args, **kwargs):
            mask = kwargs.pop("encoder_attention_mask", None)
            if mask is not None:
                raise BadInputError(
                    "Versatile Diffusion's dual transformer cannot use an encoder_attention_mask."
                )
            return super().forward(hidden_states, encoder_hidden_states, *args, **kwargs)

    return DualTransformer2DAcceptingMask


def load_versatile_pipeline(
    model_id_or_path=DEFAULT_VERSATILE_MODEL,
    device: str = "auto",
    dtype: str = "float32",
):
    """Load a :class:`diffusers.VersatileDiffusionDualGuidedPipeline`.

    Each component is loaded from its subfolder with its own ``from_pretrained``
    (``VersatileDiffusionDualGuidedPipeline.from_pretrained`` cannot resolve the
    text UNet's class in diffusers 0.42) and the pipeline is built from them: the
    text UNet's attention blocks are merged into the image UNet's dual transformers,
    and the rest of the text UNet is dropped (``remove_unused_weights``), as in the
    diffusers example. The dual transformers are also made to accept the
    ``encoder_attention_mask`` keyword the UNet passes them (diffusers issue
    #13651; without it the dual-guided UNet raises ``TypeError``).

    Parameters
    ----------
    model_id_or_path : str or path
        Hub id (default ``"shi-labs/versatile-diffusion"``: tokens of width 768), a
        local folder, or ``"tiny"`` / ``"tiny:<seed>"`` for a random tiny pipeline
        built in code (tokens of width 32, 64-px images; for offline demos and tests).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.

    Returns
    -------
    pipeline : diffusers.VersatileDiffusionDualGuidedPipeline

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    import diffusers
    from diffusers import (
        AutoencoderKL,
        UNet2DConditionModel,
        VersatileDiffusionDualGuidedPipeline,
    )
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import (
        UNetFlatConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
        CLIPVisionModelWithProjection,
    )

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if is_tiny(model_id_or_path):
        logger.info(
            "Versatile Diffusion pipeline %r: random weights (tiny model).", model_id_or_path
        )
        model_id_or_path = _tiny_versatile_folder(parse_tiny(model_id_or_path))
    path = str(model_id_or_path)
    with explain_missing_weights("Versatile Diffusion pipeline", model_id_or_path):
        # VersatileDiffusionDualGuidedPipeline.from_pretrained cannot load the text UNet
        # in diffusers 0.42: UNetFlatConditionModel lives in pipelines.deprecated, and
        # neither the library name the checkpoint's model_index.json gives it (the old
        # pipeline module "versatile_diffusion") nor the one save_pretrained writes
        # ("diffusers") resolves to it. So each component is loaded from its subfolder.
        with warnings.catch_warnings():
            # diffusers' own call to huggingface_hub, nothing the user can act on
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            index = VersatileDiffusionDualGuidedPipeline.load_config(path)
        scheduler_name = index.get("scheduler", [None, "DDIMScheduler"])[1]
        scheduler_cls = getattr(diffusers, str(scheduler_name), None)
        if scheduler_cls is None or not hasattr(scheduler_cls, "from_pretrained"):
            raise BadInputError(
                f"Versatile Diffusion pipeline {path!r}: unknown scheduler class "
                f"{scheduler_name!r} in model_index.json."
            )
        models = {
            "text_encoder": CLIPTextModelWithProjection,
            "image_encoder": CLIPVisionModelWithProjection,
            "image_unet": UNet2DConditionModel,
            "text_unet": UNetFlatConditionModel,
            "vae": AutoencoderKL,
        }
        parts = {
            name: cls.from_pretrained(path, subfolder=name, dtype=torch_dtype)
            for name, cls in models.items()
        }
        parts["tokenizer"] = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        parts["image_feature_extractor"] = CLIPImageProcessor.from_pretrained(
            path, subfolder="image_feature_extractor"
        )
        parts["scheduler"] = scheduler_cls.from_pretrained(path, subfolder="scheduler")
    # building the pipeline merges the text UNet's attention blocks into dual transformers
    pipe = VersatileDiffusionDualGuidedPipeline(**parts)
    pipe.remove_unused_weights()
    _accept_encoder_attention_mask(pipe.image_unet)
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -------------------------------------------------------------------- validation
def _check_common(strength, guidance_scale, num_inference_steps, seed, batch_size):
    strength, num_inference_steps, batch_size, seed = check_sampling(
        strength, num_inference_steps, batch_size, seed
    )
    try:
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError) as err:
        raise BadInputError(
            f"guidance_scale must be a number, got {guidance_scale!r} instead."
        ) from err
    if not math.isfinite(guidance_scale):
        raise BadInputError(f"guidance_scale must be a finite number, got {guidance_scale}.")
    if int(num_inference_steps * strength) < 1:
        raise BadInputError(
            f"strength * num_inference_steps must be >= 1 so that at least one denoising "
            f"step runs, got strength={strength} and num_inference_steps="
            f"{num_inference_steps} instead."
        )
    return strength, guidance_scale, num_inference_steps, seed, batch_size


# ----------------------------------------------------------- shared SDEdit loop
def _sdedit_loop(
    pipeline,
    unet,
    init_images,
    generators,
    predict_noise: Callable,
    *,
    strength: float,
    guidance_scale: float,
    num_inference_steps: int,
) -> np.ndarray:
    """Noise init images to ``strength`` and denoise them; float (b, H, W, 3) in [0, 1].

    ``predict_noise(latent_model_input, t)`` returns the UNet output for
    ``latent_model_input``, which holds the unconditional then the conditional
    half of the batch when ``guidance_scale > 1`` (the conditioning is closed over).
    """
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    vae, scheduler = pipeline.vae, pipeline.scheduler
    device = pipeline.device
    dtype = unet.dtype
    do_cfg = guidance_scale > 1.0
    b = len(init_images)
    scaling = vae.config.scaling_factor

    scheduler.set_timesteps(num_inference_steps, device=device)
    if strength >= 1.0:
        # pure generation, as the pipelines' prepare_latents: the init image is ignored
        timesteps = scheduler.timesteps
        shape = (
            b,
            vae.config.latent_channels,
            init_images.shape[2] // pipeline.vae_scale_factor,
            init_images.shape[3] // pipeline.vae_scale_factor,
        )
        noise = randn_tensor(shape, generator=generators, device=device, dtype=dtype)
        latents = noise * scheduler.init_noise_sigma
    else:
        # StableDiffusionImg2ImgPipeline.get_timesteps
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = scheduler.timesteps[t_start * scheduler.order :]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        x = init_images.to(device=device, dtype=vae.dtype) * 2 - 1
        init_latents = vae.encode(x).latent_dist.mean.to(dtype) * scaling
        noise = randn_tensor(init_latents.shape, generator=generators, device=device, dtype=dtype)
        latents = scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(b))

    extra_step_kwargs = pipeline.prepare_extra_step_kwargs(generators, 0.0)
    for t in timesteps:
        latent_model_input = torch.cat([latents] * 2) if do_cfg else latents
        latent_model_input = scheduler.scale_model_input(latent_model_input, t)
        noise_pred = predict_noise(latent_model_input, t)
        if do_cfg:
            noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_cond - noise_pred_uncond)
        latents = scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

    image = vae.decode(latents.to(vae.dtype) / scaling, return_dict=False)[0]
    return np.asarray(pipeline.image_processor.postprocess(image, output_type="np"), np.float32)


def _sdedit_batches(
    pipeline,
    unet,
    init_images,
    make_predict_noise: Callable,
    *,
    seed: int,
    batch_size: int,
    strength: float,
    guidance_scale: float,
    num_inference_steps: int,
) -> np.ndarray:
    """:func:`_sdedit_loop` over batches of ``init_images``; float (n, H, W, 3) in [0, 1].

    Image ``i`` gets the generator ``seed + i``. ``make_predict_noise(start, stop,
    gens)`` builds the conditioning of images ``start:stop`` (it may draw from
    ``gens`` first) and returns their ``predict_noise``.
    """
    import torch

    n = len(init_images)
    out = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            gens = generators(seed, start, stop)
            out.append(
                _sdedit_loop(
                    pipeline,
                    unet,
                    init_images[start:stop],
                    gens,
                    make_predict_noise(start, stop, gens),
                    strength=strength,
                    guidance_scale=guidance_scale,
                    num_inference_steps=num_inference_steps,
                )
            )
    return np.concatenate(out)


# ------------------------------------------------------------------------ unCLIP
def _unclip_embed_dim(pipeline) -> int:
    return int(pipeline.image_normalizer.mean.shape[-1])


def _noise_image_embeds(pipeline, image_embeds, noise_level: int, generators):
    """The pipeline's own noise augmentation: (b, d) -> (b, 2 d) class labels.

    ``noise_image_embeddings`` scales by the normalizer, applies the
    ``image_noising_scheduler`` at ``noise_level``, unscales, and appends the
    sinusoidal embedding of ``noise_level``; the noise comes from one generator per
    image (``randn_tensor`` with a list of generators).
    """
    return pipeline.noise_image_embeddings(
        image_embeds=image_embeds, noise_level=noise_level, generator=generators
    )


def _unclip_float(
    init_images,
    image_embeds,
    *,
    pipeline,
    prompt_embeds=None,
    prompt: str = "",
    strength=0.75,
    noise_level=0,
    guidance_scale=7.5,
    num_inference_steps=50,
    seed=0,
    batch_size=4,
) -> np.ndarray:
    """Same as :func:`reconstruct_unclip` but returns float images in [0, 1]."""
    import torch

    check_pipeline(
        pipeline,
        ("noise_image_embeddings", "encode_prompt", "image_normalizer", "unet", "vae"),
        "StableUnCLIPImg2ImgPipeline",
        "load_unclip_pipeline",
    )
    strength, guidance_scale, num_inference_steps, seed, batch_size = _check_common(
        strength, guidance_scale, num_inference_steps, seed, batch_size
    )
    x = init_images_tensor(init_images, pipeline.vae_scale_factor)
    n = len(x)
    e = as_tensor("image_embeds", image_embeds, 2, "(n_images, embed_dim)")
    check_rows("image_embeds", e, n)
    embed_dim = _unclip_embed_dim(pipeline)
    unet_dim = getattr(pipeline.unet.config, "projection_class_embeddings_input_dim", None)
    if e.shape[1] != embed_dim:
        raise BadInputError(
            f"image_embeds must have {embed_dim} columns (the pipeline's CLIP image-embedding "
            f"width: image_normalizer, and half the UNet's class-embedding input "
            f"{unet_dim}), got {e.shape[1]} (shape {tuple(e.shape)}) instead."
        )
    c = None
    if prompt_embeds is not None:
        if prompt:
            raise BadInputError(
                f"Give prompt or prompt_embeds, not both (got prompt={prompt!r} and prompt_embeds)."
            )
        c = as_tensor("prompt_embeds", prompt_embeds, 3, "(n_images, seq_len, dim)")
        check_rows("prompt_embeds", c, n)
        width = pipeline.unet.config.cross_attention_dim
        seq = pipeline.tokenizer.model_max_length
        if tuple(c.shape[1:]) != (seq, width):
            raise BadInputError(
                f"prompt_embeds must have shape (n_images, {seq}, {width}) (the tokenizer's "
                f"model_max_length x the UNet's cross_attention_dim), got {tuple(c.shape)} "
                "instead."
            )
    elif not isinstance(prompt, str):
        raise BadInputError(f"prompt must be a str, got {type(prompt).__name__} instead.")
    n_levels = pipeline.image_noising_scheduler.config.num_train_timesteps
    noise_level = check_positive_int("noise_level", noise_level, minimum=0)
    if noise_level >= n_levels:
        raise BadInputError(
            f"noise_level must be in [0, {n_levels - 1}] (the image_noising_scheduler's "
            f"timesteps), got {noise_level} instead."
        )

    unet = pipeline.unet
    device, dtype = pipeline.device, unet.dtype
    do_cfg = guidance_scale > 1.0

    def make_predict_noise(start, stop, gens):
        # 1. image conditioning, as the pipeline's _encode_image (noise drawn first)
        labels = _noise_image_embeds(pipeline, e[start:stop].to(device, dtype), noise_level, gens)
        # 2. text conditioning, as the pipeline's encode_prompt ("" is unconditional)
        text, negative = pipeline.encode_prompt(
            prompt=None if c is not None else [prompt] * (stop - start),
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=do_cfg,
            prompt_embeds=None if c is None else c[start:stop].to(device, dtype),
        )
        if do_cfg:
            text = torch.cat([negative, text])
            labels = torch.cat([torch.zeros_like(labels), labels])

        def predict_noise(latent_in, t):
            return unet(
                latent_in, t, encoder_hidden_states=text, class_labels=labels, return_dict=False
            )[0]

        return predict_noise

    return _sdedit_batches(
        pipeline,
        unet,
        x,
        make_predict_noise,
        seed=seed,
        batch_size=batch_size,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
    )


def reconstruct_unclip(
    init_images,
    image_embeds,
    *,
    pipeline,
    prompt_embeds=None,
    prompt: str = "",
    strength: float = 0.75,
    noise_level: int = 0,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 4,
) -> np.ndarray:
    """Brain-Diffuser reconstruction with Stable unCLIP: init image + CLIP image embedding.

    Parameters
    ----------
    init_images : array of shape (n_images, H, W, 3)
        Low-level init images (uint8, or float in [0, 1]), e.g. decoded from
        predicted VAE latents or a blurry predicted image. ``H`` and ``W`` set the
        output size and must be multiples of the VAE factor (8); use the model's
        resolution (768 for ``stable-diffusion-2-1-unclip``).
    image_embeds : array or tensor of shape (n_images, embed_dim)
        Predicted pooled, projected CLIP image embeddings (``image_embeds`` of
        ``CLIPVisionModelWithProjection``; 1024 for the default model). They are
        noise-augmented by ``noise_level`` and fed to the UNet's class embedding.
    pipeline : diffusers.StableUnCLIPImg2ImgPipeline
        E.g. from :func:`load_unclip_pipeline`.
    prompt_embeds : array or tensor of shape (n_images, seq_len, dim), optional
        Predicted CLIP text conditioning (the text encoder's hidden states; Brain-
        Diffuser also decodes text). ``dim`` must be the UNet's
        ``cross_attention_dim``. Default: the encoding of ``prompt``.
    prompt : str
        Text used for every image when ``prompt_embeds`` is None (default ``""``).
    strength : float
        Fraction of the diffusion applied to the init images, in (0, 1]. ``1.0``
        ignores the init images (pure generation from the embeddings).
    noise_level : int
        Noise augmentation of the image embeddings, in
        ``[0, image_noising_scheduler.num_train_timesteps - 1]``.
    guidance_scale : float
        Classifier-free guidance (used when > 1; unconditional = all-zero image
        embedding and the empty prompt, as the pipeline).
    num_inference_steps : int
        Scheduler steps (only ``int(strength * num_inference_steps)`` of them run).
    seed : int
        Image ``i`` uses ``torch.Generator().manual_seed(seed + i)``, so results do
        not depend on ``batch_size``.
    batch_size : int
        Images denoised together.

    Returns
    -------
    images : ndarray of shape (n_images, H, W, 3), uint8
    """
    images = _unclip_float(
        init_images,
        image_embeds,
        pipeline=pipeline,
        prompt_embeds=prompt_embeds,
        prompt=prompt,
        strength=strength,
        noise_level=noise_level,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        batch_size=batch_size,
    )
    return to_uint8(images)


# ------------------------------------------------------------- Versatile Diffusion
def _versatile_unconditional(pipeline):
    """(1, 77, d) text and (1, 257, d) image tokens of the empty prompt / grey image.

    Exactly the unconditional embeddings of the pipeline's ``_encode_text_prompt``
    and ``_encode_image_prompt`` (which encode ``""`` and a uniform 0.5 image).
    """
    device = pipeline.device
    text = pipeline._encode_text_prompt([""], device, 1, False)
    image = pipeline._encode_image_prompt([np.zeros((512, 512, 3)) + 0.5], device, 1, False)
    return text, image


def _versatile_float(
    init_images,
    image_tokens,
    text_tokens,
    *,
    pipeline,
    mix_ratio=0.4,
    strength=0.75,
    guidance_scale=7.5,
    num_inference_steps=50,
    seed=0,
    batch_size=4,
) -> np.ndarray:
    """Same as :func:`reconstruct_versatile` but returns float images in [0, 1]."""
    import torch

    check_pipeline(
        pipeline,
        ("set_transformer_params", "image_unet", "text_encoder", "vae"),
        "VersatileDiffusionDualGuidedPipeline",
        "load_versatile_pipeline",
    )
    strength, guidance_scale, num_inference_steps, seed, batch_size = _check_common(
        strength, guidance_scale, num_inference_steps, seed, batch_size
    )
    try:
        mix_ratio = float(mix_ratio)
    except (TypeError, ValueError) as err:
        raise BadInputError(f"mix_ratio must be a number, got {mix_ratio!r} instead.") from err
    if not 0 <= mix_ratio <= 1:
        raise BadInputError(f"mix_ratio must be in [0, 1], got {mix_ratio} instead.")
    x = init_images_tensor(init_images, pipeline.vae_scale_factor)
    n = len(x)
    width = pipeline.image_unet.config.cross_attention_dim
    n_text = pipeline.text_encoder.config.max_position_embeddings
    expected = {"image_tokens": (VD_IMAGE_TOKENS, width), "text_tokens": (n_text, width)}
    tokens = {}
    for name, value in (("image_tokens", image_tokens), ("text_tokens", text_tokens)):
        t = as_tensor(name, value, 3, "(n_images, n_tokens, dim)")
        check_rows(name, t, n)
        if tuple(t.shape[1:]) != expected[name]:
            raise BadInputError(
                f"{name} must have shape (n_images, {expected[name][0]}, {expected[name][1]}) "
                f"(tokens x the UNet's cross_attention_dim), got {tuple(t.shape)} instead."
            )
        tokens[name] = t

    unet = pipeline.image_unet
    device, dtype = pipeline.device, unet.dtype
    do_cfg = guidance_scale > 1.0
    with torch.no_grad():
        uncond_text, uncond_image = _versatile_unconditional(pipeline)
    uncond = torch.cat([uncond_text, uncond_image], dim=1).to(device, dtype)
    # text tokens first, then image tokens; mix_ratio weighs the text branch
    pipeline.set_transformer_params(mix_ratio, ("text", "image"))

    def make_predict_noise(start, stop, gens):
        cond = torch.cat(
            [tokens["text_tokens"][start:stop], tokens["image_tokens"][start:stop]], dim=1
        ).to(device, dtype)
        if do_cfg:
            cond = torch.cat([uncond.expand(stop - start, -1, -1), cond])

        def predict_noise(latent_in, t):
            return unet(latent_in, t, encoder_hidden_states=cond).sample

        return predict_noise

    return _sdedit_batches(
        pipeline,
        unet,
        x,
        make_predict_noise,
        seed=seed,
        batch_size=batch_size,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
    )


def reconstruct_versatile(
    init_images,
    image_tokens,
    text_tokens,
    *,
    pipeline,
    mix_ratio: float = 0.4,
    strength: float = 0.75,
    guidance_scale: float = 7.5,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 4,
) -> np.ndarray:
    """Brain-Diffuser reconstruction with Versatile Diffusion (as in the paper).

    Parameters
    ----------
    init_images : array of shape (n_images, H, W, 3)
        Low-level init images (uint8, or float in [0, 1]; the paper: VDVAE
        reconstructions resized to 512 × 512). ``H`` and ``W`` set the output size
        and must be multiples of the VAE factor (8).
    image_tokens : array or tensor of shape (n_images, 257, dim)
        Predicted CLIP-vision tokens, normalised as the pipeline's
        ``_encode_image_prompt`` (projected last hidden states divided by the norm
        of the class token); ``dim`` is the UNet's ``cross_attention_dim`` (768).
    text_tokens : array or tensor of shape (n_images, 77, dim)
        Predicted CLIP-text tokens, normalised as ``_encode_text_prompt``
        (projected hidden states divided by the norm of the pooled embedding).
    pipeline : diffusers.VersatileDiffusionDualGuidedPipeline
        E.g. from :func:`load_versatile_pipeline`.
    mix_ratio : float
        Weight of the text branch in the dual transformers, in [0, 1] (the image
        branch gets ``1 - mix_ratio``); the paper uses 0.4.
    strength : float
        Fraction of the diffusion applied to the init images, in (0, 1] (paper:
        0.75). ``1.0`` ignores the init images.
    guidance_scale : float
        Classifier-free guidance (used when > 1; unconditional = the encodings of
        the empty prompt and of a uniform grey image, as the pipeline). Paper: 7.5.
    num_inference_steps : int
        Scheduler steps (paper: 50 DDIM steps, 37 of which run at strength 0.75).
    seed : int
        Image ``i`` uses ``torch.Generator().manual_seed(seed + i)``.
    batch_size : int
        Images denoised together.

    Returns
    -------
    images : ndarray of shape (n_images, H, W, 3), uint8
    """
    images = _versatile_float(
        init_images,
        image_tokens,
        text_tokens,
        pipeline=pipeline,
        mix_ratio=mix_ratio,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        batch_size=batch_size,
    )
    return to_uint8(images)
