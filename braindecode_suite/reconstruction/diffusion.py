"""Latent-diffusion image reconstruction (Takagi & Nishimoto 2023 style).

Predicted init latents ``z`` (from brain activity, already multiplied by the VAE
scaling factor) are decoded by the pipeline's VAE to coarse init images, which
Stable Diffusion img2img then refines under predicted text conditioning ``c``
(``prompt_embeds``). One :class:`torch.Generator` seeded ``seed + i`` is used
per image ``i``, so the output of an image does not depend on ``batch_size``.

This route takes latents and text embeddings rather than one feature array, so
it is not registered in :data:`braindecode_suite.reconstruction.image.METHODS`.
"""

from __future__ import annotations

import numpy as np

from ..utils.devices import resolve_device, resolve_dtype
from ..utils.hub import explain_missing_weights
from ..utils.tiny import TINY_SD_HIDDEN, is_tiny, parse_tiny, tiny_sd_img2img_folder
from ..utils.validation import BadInputError
from ._common import (
    check_pipeline,
    check_sampling,
    decode_init_latents,
    img2img_batches,
    init_images_tensor,
    init_latents_tensor,
    negative_embeds,
    prompt_embeds_tensor,
    to_uint8,
)

__all__ = ["load_img2img_pipeline", "reconstruct_img2img"]


def load_img2img_pipeline(
    model_id_or_path,
    device: str = "auto",
    dtype: str = "float32",
    *,
    cross_attention_dim: int = TINY_SD_HIDDEN,
):
    """Load a :class:`diffusers.StableDiffusionImg2ImgPipeline`.

    Parameters
    ----------
    model_id_or_path : str or path
        Hub id (e.g. ``"runwayml/stable-diffusion-v1-5"``), a local folder, or
        ``"tiny"`` / ``"tiny:<seed>"`` for a random tiny pipeline built in code
        (:mod:`braindecode_suite.utils.tiny`; for offline demos and tests).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.
    cross_attention_dim : int
        Only for tiny pipelines: width of the conditioning tokens the UNet attends
        to (e.g. the width of predicted CLIP image tokens for the MindEye2 route).

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    from diffusers import StableDiffusionImg2ImgPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if is_tiny(model_id_or_path):
        model_id_or_path = tiny_sd_img2img_folder(
            parse_tiny(model_id_or_path), cross_attention_dim=cross_attention_dim
        )
    with explain_missing_weights("Stable Diffusion img2img pipeline", model_id_or_path):
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            str(model_id_or_path),
            dtype=torch_dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _img2img_float(
    init_latents,
    prompt_embeds,
    *,
    pipeline,
    init_images=None,
    strength=0.75,
    guidance_scale=5.0,
    num_inference_steps=50,
    seed=0,
    batch_size=4,
    negative_prompt_embeds=None,
) -> np.ndarray:
    """Same as :func:`reconstruct_img2img` but returns float images in [0, 1]."""
    check_pipeline(
        pipeline, ("vae", "unet"), "StableDiffusionImg2ImgPipeline", "load_img2img_pipeline"
    )
    if (init_latents is None) == (init_images is None):
        raise BadInputError(
            "Give exactly one of init_latents (predicted VAE latents) and init_images "
            "(e.g. the blurry low-level reconstruction), got "
            f"{'both' if init_latents is not None else 'neither'}."
        )
    if init_latents is not None:
        z = init_latents_tensor(init_latents, pipeline.vae)
        n = len(z)
    else:
        x = init_images_tensor(init_images)
        n = len(x)
    c = prompt_embeds_tensor(prompt_embeds, n, pipeline.unet)
    nc = negative_embeds(negative_prompt_embeds, c, guidance_scale)
    strength, num_inference_steps, batch_size, seed = check_sampling(
        strength, num_inference_steps, batch_size, seed
    )

    def init_batch(start, stop):
        if init_latents is not None:
            return decode_init_latents(pipeline.vae, z[start:stop], pipeline.device), {}
        return x[start:stop].to(pipeline.device), {}

    return img2img_batches(
        pipeline,
        c,
        nc,
        init_batch,
        batch_size=batch_size,
        seed=seed,
        strength=strength,
        guidance_scale=float(guidance_scale),
        num_inference_steps=num_inference_steps,
    )


def reconstruct_img2img(
    init_latents,
    prompt_embeds,
    *,
    pipeline,
    init_images=None,
    strength: float = 0.75,
    guidance_scale: float = 5.0,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 4,
    negative_prompt_embeds=None,
) -> np.ndarray:
    """Reconstruct images from predicted init latents and text conditioning.

    Parameters
    ----------
    init_latents : array or tensor of shape (n_images, latent_channels, h, w) or None
        Predicted VAE latents ``z``, already multiplied by
        ``pipeline.vae.config.scaling_factor`` (as ``vae.encode(x) * scaling``).
        They are decoded by ``pipeline.vae`` into the init images. None when
        ``init_images`` is given.
    prompt_embeds : array or tensor of shape (n_images, seq_len, dim)
        Predicted conditioning tokens the UNet cross-attends to; ``dim`` must equal
        ``pipeline.unet.config.cross_attention_dim``. Takagi & Nishimoto: the text
        encoder's hidden states of the captions (77 × 768 for SD 1.x). MindEye2
        style: predicted CLIP *image* tokens, with a UNet trained to attend to them.
    pipeline : diffusers.StableDiffusionImg2ImgPipeline
        E.g. from :func:`load_img2img_pipeline`.
    init_images : array of shape (n_images, H, W, 3), optional
        Init images instead of latents (uint8, or float in [0, 1]); e.g. the
        blurry low-level reconstruction, as MindEye2 does. ``H, W`` set the
        output size.
    strength : float
        Fraction of the diffusion applied to the init images, in (0, 1].
    guidance_scale : float
        Classifier-free guidance scale. When > 1 and ``negative_prompt_embeds``
        is None, an all-zero embedding of the same shape is used as the
        unconditional embedding.
    num_inference_steps : int
        Scheduler steps (only ``strength`` of them run).
    seed : int
        Image ``i`` uses ``torch.Generator().manual_seed(seed + i)``, so results do
        not depend on ``batch_size``.
    batch_size : int
        Images per pipeline call.
    negative_prompt_embeds : array or tensor, optional
        Unconditional embedding(s), shape like ``prompt_embeds`` or (seq_len, dim).

    Returns
    -------
    images : ndarray of shape (n_images, H, W, 3), uint8
        ``H, W`` are the VAE's decoded size (8 × the latent size for SD).
    """
    images = _img2img_float(
        init_latents,
        prompt_embeds,
        pipeline=pipeline,
        init_images=init_images,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        batch_size=batch_size,
        negative_prompt_embeds=negative_prompt_embeds,
    )
    return to_uint8(images)
