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
from ..utils.tiny import TINY_SD_HIDDEN, is_tiny, parse_tiny, tiny_sd_img2img_folder
from ..utils.validation import BadInputError, check_positive_int

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
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
            str(model_id_or_path),
            dtype=torch_dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    except OSError as err:
        raise BadInputError(
            f"Could not load the Stable Diffusion img2img pipeline {str(model_id_or_path)!r}: "
            f"{str(err).rstrip('.')}. Download it first while online (e.g. `huggingface-cli download "
            f"{model_id_or_path}`, or run once without HF_HUB_OFFLINE=1), or pass the path "
            "of a local folder saved with `pipeline.save_pretrained(...)`."
        ) from err
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _as_tensor(name, value, ndim, shape_doc):
    import torch

    t = (
        value.detach().cpu()
        if isinstance(value, torch.Tensor)
        else torch.as_tensor(np.asarray(value, dtype=np.float32))
    )
    if t.ndim != ndim:
        raise BadInputError(f"{name} must have shape {shape_doc}, got {tuple(t.shape)} instead.")
    t = t.float()
    if not torch.isfinite(t).all():
        raise BadInputError(f"{name} contains NaN or inf values.")
    return t


def _init_images_float(init_images) -> np.ndarray:
    """uint8 (n, H, W, 3) or float [0, 1] images -> float32 (n, 3, H, W) in [0, 1]."""
    a = np.asarray(init_images)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise BadInputError(
            f"init_images must have shape (n_images, height, width, 3), got {a.shape} instead."
        )
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise BadInputError("init_images contains NaN or inf values.")
    return np.ascontiguousarray(np.clip(a, 0, 1).transpose(0, 3, 1, 2))


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
    import torch

    if pipeline is None or not hasattr(pipeline, "vae") or not hasattr(pipeline, "unet"):
        raise BadInputError(
            "pipeline must be a diffusers StableDiffusionImg2ImgPipeline "
            f"(see load_img2img_pipeline), got {type(pipeline).__name__} instead."
        )
    if (init_latents is None) == (init_images is None):
        raise BadInputError(
            "Give exactly one of init_latents (predicted VAE latents) and init_images "
            "(e.g. the blurry low-level reconstruction), got "
            f"{'both' if init_latents is not None else 'neither'}."
        )
    c = _as_tensor("prompt_embeds", prompt_embeds, 3, "(n_images, seq_len, dim)")
    if init_latents is not None:
        z = _as_tensor("init_latents", init_latents, 4, "(n_images, channels, h, w)")
        n = len(z)
        latent_channels = pipeline.vae.config.latent_channels
        if z.shape[1] != latent_channels:
            raise BadInputError(
                f"init_latents must have {latent_channels} channels (pipeline.vae "
                f"latent_channels), got {z.shape[1]} (shape {tuple(z.shape)}) instead."
            )
    else:
        x = torch.from_numpy(_init_images_float(init_images))
        n = len(x)
    if n == 0:
        raise BadInputError("init_latents / init_images must contain at least one image, got 0.")
    if len(c) != n:
        raise BadInputError(
            f"prompt_embeds must have one row per image: got {len(c)} rows, "
            f"expected {n} (the number of init images)."
        )
    width = pipeline.unet.config.cross_attention_dim
    if c.shape[2] != width:
        raise BadInputError(
            f"prompt_embeds last dimension must be {width} (the UNet's cross_attention_dim), "
            f"got {c.shape[2]} (shape {tuple(c.shape)}) instead."
        )
    nc = None
    if negative_prompt_embeds is not None:
        nc = np.asarray(
            negative_prompt_embeds.detach().cpu()
            if isinstance(negative_prompt_embeds, torch.Tensor)
            else negative_prompt_embeds,
            dtype=np.float32,
        )
        if nc.shape == c.shape[1:]:
            nc = np.broadcast_to(nc, c.shape).copy()
        nc = _as_tensor("negative_prompt_embeds", nc, 3, f"{tuple(c.shape)}")
        if nc.shape != c.shape:
            raise BadInputError(
                f"negative_prompt_embeds must have shape {tuple(c.shape)} (like prompt_embeds), "
                f"got {tuple(nc.shape)} instead."
            )
    elif guidance_scale > 1:
        # classifier-free guidance needs an unconditional embedding: use zeros
        nc = torch.zeros_like(c)
    if not 0 < float(strength) <= 1:
        raise BadInputError(f"strength must be in (0, 1], got {strength} instead.")
    num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_positive_int("seed", seed, minimum=0)

    vae = pipeline.vae
    device = pipeline.device
    dtype = vae.dtype
    scaling = getattr(vae.config, "scaling_factor", 1.0)
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if init_latents is not None:
            with torch.no_grad():
                decoded = vae.decode(z[start:stop].to(device, dtype) / scaling).sample
            # [-1, 1] -> [0, 1]: the pipeline's image processor normalises back
            batch_images = (decoded.float() / 2 + 0.5).clamp(0, 1)
        else:
            batch_images = x[start:stop].to(device)
        kwargs = {}
        if nc is not None:
            kwargs["negative_prompt_embeds"] = nc[start:stop].to(device, dtype)
        result = pipeline(
            prompt_embeds=c[start:stop].to(device, dtype),
            image=batch_images,
            strength=float(strength),
            guidance_scale=float(guidance_scale),
            num_inference_steps=num_inference_steps,
            generator=[torch.Generator().manual_seed(seed + i) for i in range(start, stop)],
            output_type="np",
            **kwargs,
        )
        out.append(np.asarray(result.images, dtype=np.float32))
    return np.concatenate(out)


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
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
