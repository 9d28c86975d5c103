"""Depth-ControlNet img2img reconstruction ("multiple decoded inputs", Takagi & Nishimoto).

Besides init latents ``z`` and text conditioning ``c``, a depth map is decoded
from brain activity (see :class:`braindecode_suite.features.depth.DepthExtractor`)
and steers Stable Diffusion through a depth ControlNet
(``lllyasviel/sd-controlnet-depth``). As in :func:`~.diffusion.reconstruct_img2img`,
the init latents are decoded by the VAE into init images that img2img refines,
and image ``i`` uses its own ``torch.Generator().manual_seed(seed + i)``, so the
output of an image does not depend on ``batch_size``.

Depth maps (n, h, w) in [0, 1] (near = 1, as MiDaS disparity normalised per
image) are resized (bilinear, antialiased) to the output resolution and
repeated over the 3 channels of the control image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils.devices import resolve_device, resolve_dtype
from ..utils.hub import explain_missing_weights
from ..utils.io import atomic_dir
from ..utils.logging import logger
from ..utils.tiny import (
    is_tiny,
    parse_tiny,
    tiny_cache_dir,
    tiny_sd_components,
    tiny_sd_img2img_folder,
)
from ..utils.validation import BadInputError
from ._common import (
    as_tensor,
    check_pipeline,
    check_rows,
    check_sampling,
    decode_init_latents,
    img2img_batches,
    init_latents_tensor,
    negative_embeds,
    prompt_embeds_tensor,
    to_uint8,
)

__all__ = [
    "DEFAULT_CONTROLNET",
    "load_controlnet_img2img_pipeline",
    "reconstruct_img2img_depth",
    "tiny_controlnet_folder",
]

#: the depth ControlNet for Stable Diffusion 1.5 (trained on MiDaS depth maps)
DEFAULT_CONTROLNET = "lllyasviel/sd-controlnet-depth"

#: bump when the tiny ControlNet config changes, so stale cached folders are not reused
TINY_CONTROLNET_VERSION = 1


def tiny_controlnet_folder(seed: int = 0) -> Path:
    """A saved random tiny ``ControlNetModel`` matching the UNet of ``tiny_sd_components(seed)``.

    It is made with ``ControlNetModel.from_unet`` (block_out_channels (32, 64),
    cross_attention_dim 32, norm_num_groups 8, layers_per_block 1, the UNet's
    encoder weights copied, as ControlNet training starts) and a 3-stage-downsampling
    conditioning embedding (8, 8, 16, 16) for the tiny VAE's 8× factor. Under
    ``torch.manual_seed(seed + 3)`` the conditioning embedding gets a
    variance-preserving (Kaiming) init and the zero convolutions (zero at the start
    of real training) small random weights, so the control image changes the output,
    as with trained weights.
    """
    folder = tiny_cache_dir() / f"controlnet-depth-s{seed}-v{TINY_CONTROLNET_VERSION}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from diffusers import ControlNetModel

    unet = tiny_sd_components(seed)["unet"]
    with torch.random.fork_rng():
        torch.manual_seed(seed + 3)
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=(8, 8, 16, 16)
        )
        embedding = controlnet.controlnet_cond_embedding
        zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
        with torch.no_grad():
            # variance-preserving init of the conditioning embedding, so that the control
            # image, not only its biases, reaches the ControlNet
            for conv in [embedding.conv_in, *embedding.blocks, embedding.conv_out]:
                torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                torch.nn.init.zeros_(conv.bias)
            for conv in zero_convs:
                torch.nn.init.normal_(conv.weight, std=0.1)
                torch.nn.init.normal_(conv.bias, std=0.01)
    with atomic_dir(folder) as tmp:
        controlnet.save_pretrained(tmp)
    return folder


def load_controlnet_img2img_pipeline(
    model_id_or_path="runwayml/stable-diffusion-v1-5",
    controlnet=DEFAULT_CONTROLNET,
    device: str = "auto",
    dtype: str = "float32",
):
    """Load a :class:`diffusers.StableDiffusionControlNetImg2ImgPipeline`.

    Parameters
    ----------
    model_id_or_path : str or path
        Stable Diffusion 1.x: Hub id, local folder, or ``"tiny"`` / ``"tiny:<seed>"``
        for a random tiny pipeline built in code (offline demos and tests).
    controlnet : str or path
        The ControlNet: Hub id (default ``'lllyasviel/sd-controlnet-depth'``), local
        folder, or ``"tiny"`` / ``"tiny:<seed>"`` (:func:`tiny_controlnet_folder`).
        A tiny Stable Diffusion needs a tiny ControlNet of the same seed; with the
        default ``controlnet`` it gets that one.
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline), or a tiny
        model is paired with a ControlNet of another shape.
    """
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    if is_tiny(model_id_or_path):
        seed = parse_tiny(model_id_or_path)
        if controlnet == DEFAULT_CONTROLNET:
            controlnet = f"tiny:{seed}"
        if not is_tiny(controlnet) or parse_tiny(controlnet) != seed:
            raise BadInputError(
                f"controlnet must be 'tiny:{seed}' for model_id_or_path={model_id_or_path!r} "
                f"(a tiny ControlNet matches the tiny UNet of the same seed), got {controlnet!r}."
            )
        model_id_or_path = tiny_sd_img2img_folder(seed)
        logger.info(
            "controlnet img2img: random tiny pipeline (seed %d), outputs mean nothing", seed
        )
    elif is_tiny(controlnet):
        raise BadInputError(
            f"controlnet={controlnet!r} (tiny) only fits model_id_or_path='tiny' or 'tiny:<seed>', "
            f"got {str(model_id_or_path)!r}."
        )
    controlnet_source = (
        tiny_controlnet_folder(parse_tiny(controlnet)) if is_tiny(controlnet) else controlnet
    )
    with explain_missing_weights("ControlNet", controlnet):
        controlnet_model = ControlNetModel.from_pretrained(
            str(controlnet_source), dtype=torch_dtype
        )
    with explain_missing_weights("Stable Diffusion pipeline", model_id_or_path):
        pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
            str(model_id_or_path),
            controlnet=controlnet_model,
            dtype=torch_dtype,
            safety_checker=None,
            requires_safety_checker=False,
        )
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _depth_control_images(depth, height: int, width: int):
    """Depth (b, h, w) in [0, 1] -> control images (b, 3, height, width) in [0, 1]."""
    import torch.nn.functional as F

    d = depth[:, None]
    if tuple(d.shape[-2:]) != (height, width):
        d = F.interpolate(
            d, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    return d.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def _controlnet_img2img_float(
    init_latents,
    prompt_embeds,
    depth_maps,
    *,
    pipeline,
    controlnet_conditioning_scale=1.0,
    strength=0.75,
    guidance_scale=5.0,
    num_inference_steps=50,
    seed=0,
    batch_size=4,
) -> np.ndarray:
    """Same as :func:`reconstruct_img2img_depth` but returns float images in [0, 1]."""
    check_pipeline(
        pipeline,
        ("vae", "unet", "controlnet"),
        "StableDiffusionControlNetImg2ImgPipeline",
        "load_controlnet_img2img_pipeline",
    )
    z = init_latents_tensor(init_latents, pipeline.vae)
    n = len(z)
    c = prompt_embeds_tensor(prompt_embeds, n, pipeline.unet)
    depth = as_tensor("depth_maps", depth_maps, 3, "(n_images, height, width)")
    check_rows("depth_maps", depth, n)
    if depth.shape[1] < 2 or depth.shape[2] < 2:
        raise BadInputError(
            f"depth_maps must be at least 2×2 pixels, got shape {tuple(depth.shape)} instead."
        )
    lo, hi = float(depth.min()), float(depth.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise BadInputError(
            f"depth_maps must be in [0, 1] (min-max normalised per image, near = 1), got "
            f"values in [{lo:.3g}, {hi:.3g}]; use DepthExtractor(normalize=True) targets."
        )
    scale = float(controlnet_conditioning_scale)
    if not np.isfinite(scale) or scale < 0:
        raise BadInputError(
            f"controlnet_conditioning_scale must be a finite number >= 0, got "
            f"{controlnet_conditioning_scale} instead."
        )
    # classifier-free guidance (guidance_scale > 1): zeros as the unconditional embedding
    nc = negative_embeds(None, c, guidance_scale)
    strength, num_inference_steps, batch_size, seed = check_sampling(
        strength, num_inference_steps, batch_size, seed
    )

    def init_batch(start, stop):
        init_images = decode_init_latents(pipeline.vae, z[start:stop], pipeline.device)
        height, width = init_images.shape[-2:]
        control = _depth_control_images(depth[start:stop], height, width)
        return init_images, {
            "control_image": control.to(pipeline.device),
            "height": height,
            "width": width,
        }

    return img2img_batches(
        pipeline,
        c,
        nc,
        init_batch,
        batch_size=batch_size,
        seed=seed,
        controlnet_conditioning_scale=scale,
        strength=strength,
        guidance_scale=float(guidance_scale),
        num_inference_steps=num_inference_steps,
    )


def reconstruct_img2img_depth(
    init_latents,
    prompt_embeds,
    depth_maps,
    *,
    pipeline,
    controlnet_conditioning_scale: float = 1.0,
    strength: float = 0.75,
    guidance_scale: float = 5.0,
    num_inference_steps: int = 50,
    seed: int = 0,
    batch_size: int = 4,
) -> np.ndarray:
    """Reconstruct images from predicted init latents, text conditioning and depth.

    Parameters
    ----------
    init_latents : array or tensor of shape (n_images, latent_channels, h, w)
        Predicted VAE latents, already multiplied by ``pipeline.vae.config.scaling_factor``;
        decoded by ``pipeline.vae`` into the init images (8·h × 8·w for SD).
    prompt_embeds : array or tensor of shape (n_images, seq_len, dim)
        Predicted conditioning tokens; ``dim`` must equal the UNet's
        ``cross_attention_dim`` (77 × 768 text-encoder states for SD 1.x).
    depth_maps : array or tensor of shape (n_images, height, width)
        Predicted depth in [0, 1], near = 1 (e.g. decoded
        ``DepthExtractor(normalize=True)`` features). Resized to the output
        resolution and repeated over 3 channels as the ControlNet's control image.
    pipeline : diffusers.StableDiffusionControlNetImg2ImgPipeline
        E.g. from :func:`load_controlnet_img2img_pipeline`.
    controlnet_conditioning_scale : float
        Weight of the ControlNet residuals (>= 0); 0 is plain img2img.
    strength : float
        Fraction of the diffusion applied to the init images, in (0, 1].
    guidance_scale : float
        Classifier-free guidance scale; when > 1 an all-zero embedding is the
        unconditional one (as in :func:`~.diffusion.reconstruct_img2img`).
    num_inference_steps : int
        Scheduler steps (only ``strength`` of them run).
    seed : int
        Image ``i`` uses ``torch.Generator().manual_seed(seed + i)``, so results do
        not depend on ``batch_size``.
    batch_size : int
        Images per pipeline call.

    Returns
    -------
    images : ndarray of shape (n_images, H, W, 3), uint8
        ``H, W``: the VAE's decoded size.
    """
    images = _controlnet_img2img_float(
        init_latents,
        prompt_embeds,
        depth_maps,
        pipeline=pipeline,
        controlnet_conditioning_scale=controlnet_conditioning_scale,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        batch_size=batch_size,
    )
    return to_uint8(images)
