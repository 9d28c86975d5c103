"""Input checks and small steps shared by the diffusion reconstruction routes.

Used by :mod:`.diffusion`, :mod:`.controlnet`, :mod:`.unclip` (and in part
:mod:`.captions`): conversion of predicted features to float tensors, the checks
of init latents / init images / text conditioning against a pipeline, the VAE
decoding of init latents, and the per-image generators that make the outputs
independent of ``batch_size``.
"""

from __future__ import annotations

import numpy as np

from ..utils.validation import BadInputError, check_positive_int


def as_tensor(name: str, value, ndim: int, shape_doc: str):
    """``value`` (array or tensor) as a finite float32 CPU tensor with ``ndim`` dims."""
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


def check_pipeline(pipeline, attributes, expected: str, loader: str) -> None:
    """Raise unless ``pipeline`` has all ``attributes`` (a ``expected`` from ``loader``)."""
    if not all(hasattr(pipeline, a) for a in attributes):
        raise BadInputError(
            f"pipeline must be a diffusers {expected} (see {loader}), "
            f"got {type(pipeline).__name__} instead."
        )


def check_rows(name: str, t, n: int) -> None:
    """Raise unless ``t`` has ``n`` rows (one per init image)."""
    if len(t) != n:
        raise BadInputError(
            f"{name} must have one row per image: got {len(t)} rows, expected {n} "
            "(the number of init images)."
        )


def init_images_tensor(init_images, vae_scale_factor: int | None = None):
    """uint8 (n, H, W, 3) or float [0, 1] images -> float32 tensor (n, 3, H, W) in [0, 1].

    With ``vae_scale_factor``, ``H`` and ``W`` must be multiples of it.
    """
    import torch

    a = np.asarray(init_images)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise BadInputError(
            f"init_images must have shape (n_images, height, width, 3), got {a.shape} instead."
        )
    if len(a) == 0:
        raise BadInputError("init_images must contain at least one image, got 0.")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise BadInputError("init_images contains NaN or inf values.")
    height, width = a.shape[1:3]
    if vae_scale_factor and (height % vae_scale_factor or width % vae_scale_factor):
        raise BadInputError(
            f"init_images height and width must be multiples of {vae_scale_factor} (the "
            f"pipeline's VAE downsampling factor), got {height} x {width} instead."
        )
    return torch.from_numpy(np.ascontiguousarray(np.clip(a, 0, 1).transpose(0, 3, 1, 2)))


def init_latents_tensor(init_latents, vae):
    """Predicted VAE latents (n, latent_channels, h, w) as a checked float tensor."""
    z = as_tensor("init_latents", init_latents, 4, "(n_images, channels, h, w)")
    if len(z) == 0:
        raise BadInputError("init_latents must contain at least one image, got 0.")
    latent_channels = vae.config.latent_channels
    if z.shape[1] != latent_channels:
        raise BadInputError(
            f"init_latents must have {latent_channels} channels (pipeline.vae latent_channels), "
            f"got {z.shape[1]} (shape {tuple(z.shape)}) instead."
        )
    return z


def prompt_embeds_tensor(prompt_embeds, n: int, unet):
    """Conditioning tokens (n, seq_len, cross_attention_dim) as a checked float tensor."""
    c = as_tensor("prompt_embeds", prompt_embeds, 3, "(n_images, seq_len, dim)")
    check_rows("prompt_embeds", c, n)
    width = unet.config.cross_attention_dim
    if c.shape[2] != width:
        raise BadInputError(
            f"prompt_embeds last dimension must be {width} (the UNet's cross_attention_dim), "
            f"got {c.shape[2]} (shape {tuple(c.shape)}) instead."
        )
    return c


def negative_embeds(negative_prompt_embeds, c, guidance_scale):
    """Unconditional embeddings like ``c``, or None when guidance is off.

    ``negative_prompt_embeds`` may be shaped like ``c`` or like one of its rows
    (then broadcast). When it is None and ``guidance_scale > 1``, classifier-free
    guidance needs an unconditional embedding: all zeros.
    """
    import torch

    if negative_prompt_embeds is None:
        return torch.zeros_like(c) if guidance_scale > 1 else None
    nc = np.asarray(
        negative_prompt_embeds.detach().cpu()
        if isinstance(negative_prompt_embeds, torch.Tensor)
        else negative_prompt_embeds,
        dtype=np.float32,
    )
    if nc.shape == c.shape[1:]:
        nc = np.broadcast_to(nc, c.shape).copy()
    nc = as_tensor("negative_prompt_embeds", nc, 3, f"{tuple(c.shape)}")
    if nc.shape != c.shape:
        raise BadInputError(
            f"negative_prompt_embeds must have shape {tuple(c.shape)} (like prompt_embeds), "
            f"got {tuple(nc.shape)} instead."
        )
    return nc


def check_sampling(strength, num_inference_steps, batch_size, seed):
    """Validated ``(strength, num_inference_steps, batch_size, seed)``; strength in (0, 1]."""
    try:
        strength = float(strength)
    except (TypeError, ValueError) as err:
        raise BadInputError(f"strength must be a number, got {strength!r} instead.") from err
    if not 0 < strength <= 1:
        raise BadInputError(f"strength must be in (0, 1], got {strength} instead.")
    num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_positive_int("seed", seed, minimum=0)
    return strength, num_inference_steps, batch_size, seed


def decode_init_latents(vae, z, device):
    """Decode scaled latents ``z`` with ``vae``: init images (b, 3, H, W) in [0, 1].

    ``z`` is divided by ``vae.config.scaling_factor`` first; the [-1, 1] output is
    mapped to [0, 1] (the pipelines' image processors normalise back).
    """
    import torch

    scaling = getattr(vae.config, "scaling_factor", 1.0)
    with torch.no_grad():
        decoded = vae.decode(z.to(device, vae.dtype) / scaling).sample
    return (decoded.float() / 2 + 0.5).clamp(0, 1)


def generators(seed: int, start: int, stop: int):
    """One CPU generator per image ``i`` in ``[start, stop)``, seeded ``seed + i``."""
    import torch

    return [torch.Generator().manual_seed(seed + i) for i in range(start, stop)]


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 (clipped, rounded)."""
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def img2img_batches(pipeline, c, nc, init_batch, *, batch_size: int, seed: int, **call_kwargs):
    """Run a diffusers img2img ``pipeline`` batch by batch; float (n, H, W, 3) in [0, 1].

    ``init_batch(start, stop)`` returns the init images of images ``start:stop``
    and a dict of extra call arguments for that batch (e.g. a control image).
    ``c`` / ``nc`` are the (negative) prompt embeddings (``nc`` may be None);
    image ``i`` gets the generator ``seed + i``. ``call_kwargs`` go to every call.
    """
    device, dtype = pipeline.device, pipeline.vae.dtype
    n = len(c)
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        image, extra = init_batch(start, stop)
        if nc is not None:
            extra["negative_prompt_embeds"] = nc[start:stop].to(device, dtype)
        result = pipeline(
            prompt_embeds=c[start:stop].to(device, dtype),
            image=image,
            generator=generators(seed, start, stop),
            output_type="np",
            **extra,
            **call_kwargs,
        )
        out.append(np.asarray(result.images, dtype=np.float32))
    return np.concatenate(out)
