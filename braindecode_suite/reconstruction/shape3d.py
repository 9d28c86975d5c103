"""3D reconstruction with Shap-E image-to-3D (Brain3D style).

Predicted CLIP image-encoder tokens (or reconstructed 2D images) condition
Shap-E's latent diffusion prior (:class:`diffusers.ShapEImg2ImgPipeline`, default
``"openai/shap-e-img2img"``); the resulting per-object latents are the weights of
an implicit 3D function (NeRF + signed distance + texture) that
:func:`export_meshes` turns into a coloured triangle mesh (``.ply`` and ``.glb``)
and a turntable GIF of rendered views.

Item ``i`` uses its own ``torch.Generator().manual_seed(seed + i)`` (diffusion
noise) and ``seed + i`` for the renderer's stratified ray samples, so nothing
depends on ``batch_size``.

Three things differ from calling the diffusers pipeline directly, on purpose:

* predicted embeddings enter the pipeline's own ``__call__`` through a temporary
  replacement of ``_encode_image`` (see :func:`reconstruct_3d`);
* turntables are rendered with this module's own camera loop instead of
  ``ShapERenderer.decode_to_image``, which has 20 fixed cameras, repeats its first
  view as its last, and drops rays when ``20 * frame_size**2`` is not a multiple
  of 4096 (``frame_size=16`` fails, 32 and 64 happen to work);
* an item whose decoded field has no surface is reported (warning or
  :class:`NoSurfaceError`) instead of crashing inside diffusers with
  ``torch.cat(): expected a non-empty list``. Randomly initialised renderers
  (the ``"tiny"`` model) always hit this: the marching-cubes lookup table
  (``mesh_decoder.cases``/``masks``) is a buffer of zeros that only the real
  checkpoint fills.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.devices import resolve_device, resolve_dtype
from ..utils.hub import explain_missing_weights
from ..utils.io import atomic_dir, atomic_path
from ..utils.logging import logger
from ..utils.tiny import (
    is_tiny,
    parse_tiny,
    tiny_cache_dir,
    tiny_clip_image_processor,
    tiny_clip_vision_config,
)
from ..utils.validation import (
    BadInputError,
    BadTypeError,
    check_mesh,
    check_option,
    check_positive_int,
)

__all__ = [
    "DEFAULT_SHAP_E",
    "MESH_FORMATS",
    "NoSurfaceError",
    "ShapELatents",
    "export_meshes",
    "load_shap_e_pipeline",
    "reconstruct_3d",
    "write_glb",
    "write_ply",
    "write_turntable_gif",
]

DEFAULT_SHAP_E = "openai/shap-e-img2img"
MESH_FORMATS = ("ply", "glb")
#: bump when the tiny Shap-E config changes, so stale cached folders are not reused
_TINY_SHAP_E_VERSION = 1
#: rays rendered per renderer call (as diffusers' ``decode_to_image``)
_RAY_BATCH = 4096
#: quaternion (x, y, z, w) turning Shap-E's z-up frame into glTF's y-up frame
_Z_UP_TO_Y_UP = [-math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)]


class NoSurfaceError(BadInputError):
    """The decoded 3D field of an item has no surface, so no mesh can be written."""


# ------------------------------------------------------------------------- loading
def _tiny_shap_e_folder(seed: int) -> Path:
    """A saved tiny random ``ShapEImg2ImgPipeline`` (built once per seed)."""
    folder = tiny_cache_dir() / f"shap-e-img2img-s{seed}-v{_TINY_SHAP_E_VERSION}"
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPVisionModel

    # the dimensions of diffusers' own dummy Shap-E img2img test components, with a
    # 32-px image encoder of patch 8 (16 tokens) so the image processor's output fits
    hidden, latent_dim, renderer_dim = 16, 16, 8
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        image_encoder = CLIPVisionModel(
            tiny_clip_vision_config(
                hidden, hidden_size=hidden, intermediate_size=24, num_attention_heads=2
            )
        )
        torch.manual_seed(seed + 1)
        prior = PriorTransformer(
            num_attention_heads=2,
            attention_head_dim=16,
            embedding_dim=latent_dim,
            num_embeddings=4 * renderer_dim,  # = the rows of the 4 projected MLP weights
            embedding_proj_dim=hidden,
            time_embed_dim=4 * latent_dim,
            num_layers=1,
            clip_embed_dim=2 * latent_dim,
            additional_embeddings=0,
            time_embed_act_fn="gelu",
            norm_in_type="layer",
            embedding_proj_norm_type="layer",
            encoder_hid_proj_type=None,
            added_emb_type=None,
        )
        torch.manual_seed(seed + 2)
        renderer = ShapERenderer(
            param_shapes=(
                (renderer_dim, 93),
                (renderer_dim, 8),
                (renderer_dim, 8),
                (renderer_dim, 8),
            ),
            d_latent=latent_dim,
            d_hidden=renderer_dim,
            n_output=12,
            background=(0.1, 0.1, 0.1),
        )
    image_processor = tiny_clip_image_processor()
    # the scheduler configuration of openai/shap-e-img2img
    scheduler = HeunDiscreteScheduler(
        beta_schedule="exp",
        num_train_timesteps=1024,
        prediction_type="sample",
        use_karras_sigmas=True,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    pipe = ShapEImg2ImgPipeline(
        prior=prior,
        image_encoder=image_encoder,
        image_processor=image_processor,
        scheduler=scheduler,
        shap_e_renderer=renderer,
    )
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder


def load_shap_e_pipeline(
    model_id_or_path=DEFAULT_SHAP_E, device: str = "auto", dtype: str = "float32"
):
    """Load a :class:`diffusers.ShapEImg2ImgPipeline`.

    Parameters
    ----------
    model_id_or_path : str or path
        Hub id (default ``"openai/shap-e-img2img"``), a local folder saved with
        ``save_pretrained``, or ``"tiny"`` / ``"tiny:<seed>"`` for a tiny
        random-weights pipeline built offline (16-token, 16-dim image encoder;
        latents of shape (32, 16)). Its outputs are meaningless and its renderer
        extracts no mesh (see :class:`NoSurfaceError`).
    device : str
        ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'``.
    dtype : str
        ``'float32'``, ``'float16'``, ``'bfloat16'`` or ``'float64'``.

    Returns
    -------
    pipeline : diffusers.ShapEImg2ImgPipeline

    Raises
    ------
    BadInputError
        If the weights are neither on disk nor downloadable (e.g. offline).
    """
    from diffusers import ShapEImg2ImgPipeline

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    source = model_id_or_path
    if is_tiny(model_id_or_path):
        source = _tiny_shap_e_folder(parse_tiny(model_id_or_path))
        logger.info(
            "Shap-E %r has random weights: its latents, meshes and renders are meaningless.",
            model_id_or_path,
        )
    with explain_missing_weights(
        "Shap-E img2img pipeline",
        model_id_or_path,
        hint="; model_id_or_path='tiny' gives a random-weights pipeline for testing",
    ):
        pipe = ShapEImg2ImgPipeline.from_pretrained(str(source), dtype=torch_dtype)
    pipe = pipe.to(torch_device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -------------------------------------------------------------------- diffusion
@dataclass(frozen=True)
class ShapELatents:
    """Per-item Shap-E latents from :func:`reconstruct_3d`.

    Attributes
    ----------
    latents : ndarray of shape (n_items, num_embeddings, embedding_dim), float32
        The prior's output: the parameters the renderer projects into its MLP
        weights ((1024, 1024) per item for ``openai/shap-e-img2img``).
    seeds : tuple of int
        The generator seed of each item (``seed + i``).
    source : str
        ``'image_embeds'`` or ``'images'``: what conditioned the prior.
    """

    latents: np.ndarray
    seeds: tuple
    source: str

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, i) -> np.ndarray:
        return self.latents[i]


def _check_pipeline(pipeline):
    if pipeline is None or not all(
        hasattr(pipeline, a) for a in ("prior", "shap_e_renderer", "scheduler")
    ):
        raise BadInputError(
            "pipeline must be a diffusers ShapEImg2ImgPipeline (see load_shap_e_pipeline), "
            f"got {type(pipeline).__name__} instead."
        )


def _expected_tokens(pipeline):
    """(n_tokens or None, dim) of the image-encoder tokens the prior is conditioned on."""
    dim = int(pipeline.prior.config.embedding_proj_dim)
    cfg = getattr(getattr(pipeline, "image_encoder", None), "config", None)
    n_tokens = None
    if cfg is not None and getattr(cfg, "image_size", None) and getattr(cfg, "patch_size", None):
        n_tokens = (int(cfg.image_size) // int(cfg.patch_size)) ** 2
    return n_tokens, dim


def _check_embeds(pipeline, image_embeds):
    import torch

    if isinstance(image_embeds, torch.Tensor):
        x = image_embeds.detach().cpu().float()
    else:
        x = torch.as_tensor(np.asarray(image_embeds, dtype=np.float32))
    n_tokens, dim = _expected_tokens(pipeline)
    tok = n_tokens if n_tokens is not None else "n_tokens"
    if x.ndim != 3:
        raise BadInputError(
            f"image_embeds must have shape (n_items, {tok}, {dim}) (the image encoder's "
            f"last_hidden_state without its class token), got {tuple(x.shape)} instead."
        )
    if len(x) == 0:
        raise BadInputError("image_embeds must contain at least one item, got 0.")
    if x.shape[2] != dim:
        raise BadInputError(
            f"image_embeds last dimension must be {dim} (the prior's embedding_proj_dim, the "
            f"image encoder's hidden size), got {x.shape[2]} (shape {tuple(x.shape)}) instead."
        )
    if n_tokens is not None and x.shape[1] != n_tokens:
        raise BadInputError(
            f"image_embeds must have {n_tokens} tokens per item (the image encoder's patch "
            f"tokens, class token dropped), got {x.shape[1]} (shape {tuple(x.shape)}) instead."
        )
    if not torch.isfinite(x).all():
        raise BadInputError("image_embeds contains NaN or inf values.")
    return x


def _check_images(images):
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise BadInputError(
            f"images must have shape (n_items, height, width, 3), got {arr.shape} instead."
        )
    if arr.dtype != np.uint8:
        raise BadInputError(f"images must be uint8 (0-255), got dtype {arr.dtype} instead.")
    if len(arr) == 0:
        raise BadInputError("images must contain at least one item, got 0.")
    return arr


@contextlib.contextmanager
def _precomputed_image_embeds(pipeline):
    """Make ``pipeline(image=tokens)`` take ``tokens`` as the encoded image.

    Inside the block, the pipeline's ``_encode_image`` is an instance attribute that
    does what the original does after the image encoder (repeat per image, prepend
    all-zero tokens for classifier-free guidance); on exit the class method is back.
    """
    import torch

    encoder = getattr(pipeline, "image_encoder", None)
    dtype = encoder.dtype if encoder is not None else pipeline.prior.dtype

    def encode(image, device, num_images_per_prompt, do_classifier_free_guidance):
        embeds = image.to(device=device, dtype=dtype)
        embeds = embeds.repeat_interleave(num_images_per_prompt, dim=0)
        if do_classifier_free_guidance:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        return embeds

    own = vars(pipeline)
    had, previous = "_encode_image" in own, own.get("_encode_image")
    pipeline._encode_image = encode
    try:
        yield pipeline
    finally:
        if had:
            pipeline._encode_image = previous
        else:
            del pipeline._encode_image


def reconstruct_3d(
    image_embeds=None,
    images=None,
    *,
    pipeline,
    guidance_scale: float = 3.0,
    num_inference_steps: int = 64,
    seed: int = 0,
    batch_size: int = 4,
) -> ShapELatents:
    """Shap-E latents from predicted CLIP image tokens or from (reconstructed) images.

    Parameters
    ----------
    image_embeds : array or tensor of shape (n_items, n_tokens, dim), optional
        Predicted image-encoder tokens: what ``ShapEImg2ImgPipeline._encode_image``
        computes, ``image_encoder(x).last_hidden_state[:, 1:, :]`` (class token
        dropped; (256, 1024) per item for ``openai/shap-e-img2img``'s CLIP
        ViT-L/14).
    images : ndarray of shape (n_items, H, W, 3), uint8, optional
        Images (e.g. 2D reconstructions), preprocessed by ``pipeline.image_processor``
        and encoded by ``pipeline.image_encoder`` inside the pipeline.
        Exactly one of ``image_embeds`` and ``images`` must be given.
    pipeline : diffusers.ShapEImg2ImgPipeline
        E.g. from :func:`load_shap_e_pipeline`.
    guidance_scale : float
        Classifier-free guidance (> 1 enables it; the unconditional tokens are
        zeros, as in diffusers).
    num_inference_steps : int
        Heun scheduler steps (64 as in the Shap-E examples).
    seed : int
        Item ``i`` starts from noise of ``torch.Generator().manual_seed(seed + i)``.
    batch_size : int
        Items per pipeline call; results do not depend on it.

    Returns
    -------
    ShapELatents
        ``latents`` of shape (n_items, num_embeddings, embedding_dim), for
        :func:`export_meshes`.

    Notes
    -----
    Predicted tokens are fed to the pipeline's own ``__call__`` by replacing its
    ``_encode_image`` for the duration of the call (on this pipeline object only,
    restored afterwards): the tokens are passed as ``image`` and returned as the
    encoding. Everything else (noise, Heun loop, guidance, variance split) is then
    diffusers' code unchanged, so the two routes differ only in where the tokens
    come from, and nothing here has to follow upstream changes to the sampling loop
    as a copy of it would. The price: the same pipeline object must not run
    another call concurrently (from another thread) during the replacement.
    """
    import torch

    _check_pipeline(pipeline)
    if (image_embeds is None) == (images is None):
        given = "both" if image_embeds is not None else "neither"
        raise BadInputError(
            f"Pass exactly one of image_embeds (predicted image-encoder tokens) or images "
            f"(uint8 (n_items, H, W, 3)); got {given}."
        )
    num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_positive_int("seed", seed, minimum=0)
    try:
        guidance_scale = float(guidance_scale)
    except (TypeError, ValueError):
        raise BadTypeError(
            f"guidance_scale must be a number, got {type(guidance_scale).__name__} instead."
        ) from None
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise BadInputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}.")

    if image_embeds is not None:
        x, source = _check_embeds(pipeline, image_embeds), "image_embeds"
    else:
        x, source = _check_images(images), "images"
    n = len(x)
    kwargs = dict(
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        output_type="latent",
    )
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        generators = [torch.Generator().manual_seed(seed + i) for i in range(start, stop)]
        if source == "image_embeds":
            with _precomputed_image_embeds(pipeline):
                result = pipeline(image=x[start:stop], generator=generators, **kwargs)
        else:
            pixels = pipeline.image_processor(list(x[start:stop]), return_tensors="pt")
            result = pipeline(image=pixels.pixel_values, generator=generators, **kwargs)
        out.append(result.images.detach().float().cpu().numpy())
    return ShapELatents(
        latents=np.concatenate(out).astype(np.float32, copy=False),
        seeds=tuple(seed + i for i in range(n)),
        source=source,
    )


# ------------------------------------------------------------------------ writers
def _check_mesh_arrays(vertices, faces, colors):
    v, f = check_mesh(vertices, faces)
    v = v.astype(np.float32)
    c = np.asarray(colors, dtype=np.float32)
    if c.shape != v.shape:
        raise BadInputError(f"colors must have shape {v.shape} (RGB per vertex), got {c.shape}.")
    if not np.all(np.isfinite(c)) or c.min() < 0 or c.max() > 1:
        raise BadInputError("colors must be finite RGB values in [0, 1].")
    return v, f.astype(np.uint32), c


def write_ply(path, vertices, faces, colors) -> Path:
    """Write a binary little-endian PLY with per-vertex uint8 RGB, atomically.

    The file is written by :func:`diffusers.utils.export_to_ply` (colours stored as
    ``round(c * 255.499)``), under a temporary name renamed when complete.

    Parameters
    ----------
    path : str or path
        Output file.
    vertices : array of shape (n_vertices, 3)
    faces : int array of shape (n_faces, 3)
        Triangles as vertex indices.
    colors : array of shape (n_vertices, 3)
        RGB in [0, 1].
    """
    import torch
    from diffusers.pipelines.shap_e.renderer import MeshDecoderOutput
    from diffusers.utils import export_to_ply

    v, f, c = _check_mesh_arrays(vertices, faces, colors)
    mesh = MeshDecoderOutput(
        verts=torch.from_numpy(v),
        faces=torch.from_numpy(f.astype(np.int64)),
        vertex_channels={k: torch.from_numpy(c[:, j].copy()) for j, k in enumerate("RGB")},
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        export_to_ply(mesh, str(tmp))
    return path


def _pad4(blob: bytes, fill: bytes) -> bytes:
    return blob + fill * (-len(blob) % 4)


def write_glb(path, vertices, faces, colors) -> Path:
    """Write a glTF 2.0 binary (``.glb``) triangle mesh with vertex colours, atomically.

    One node, one mesh, one primitive (mode 4, triangles) with ``POSITION``
    (float32 VEC3, with min/max), ``COLOR_0`` (float32 VEC3, linear RGB as Shap-E's
    texture head gives it) and uint32 ``indices``, in one buffer held by the GLB's
    BIN chunk. Vertex data are stored unchanged; the node's ``rotation`` turns
    Shap-E's z-up frame into glTF's y-up frame.

    Parameters
    ----------
    path : str or path
        Output file.
    vertices, faces, colors
        As in :func:`write_ply`.
    """
    v, f, c = _check_mesh_arrays(vertices, faces, colors)
    pos = v.astype("<f4").tobytes()
    col = c.astype("<f4").tobytes()
    idx = f.astype("<u4").tobytes()
    views, offset = [], 0
    for blob, target in ((pos, 34962), (col, 34962), (idx, 34963)):
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(blob), "target": target})
        offset += len(blob)  # every block is a multiple of 4 bytes
    binary = pos + col + idx
    doc = {
        "asset": {"version": "2.0", "generator": "braindecode_suite.reconstruction.shape3d"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "rotation": _Z_UP_TO_Y_UP}],
        "meshes": [
            {"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "indices": 2, "mode": 4}]}
        ],
        "buffers": [{"byteLength": len(binary)}],
        "bufferViews": views,
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": len(v),
                "type": "VEC3",
                "min": [float(x) for x in v.min(0)],
                "max": [float(x) for x in v.max(0)],
            },
            {"bufferView": 1, "componentType": 5126, "count": len(v), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5125, "count": int(f.size), "type": "SCALAR"},
        ],
    }
    json_chunk = _pad4(json.dumps(doc, separators=(",", ":")).encode(), b" ")
    bin_chunk = _pad4(binary, b"\x00")
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(struct.pack("<4sII", b"glTF", 2, total))
        fh.write(struct.pack("<I4s", len(json_chunk), b"JSON") + json_chunk)
        fh.write(struct.pack("<I4s", len(bin_chunk), b"BIN\x00") + bin_chunk)
    return path


def write_turntable_gif(path, frames, *, fps: float = 10.0) -> Path:
    """Write frames (n_frames, H, W, 3) as a looping GIF, atomically.

    ``frames`` are uint8 or floats in [0, 1]. Pillow merges identical consecutive
    frames into one (adding up their durations).
    """
    from PIL import Image

    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        raise BadInputError(f"frames must have shape (n_frames >= 1, H, W, 3), got {arr.shape}.")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise BadInputError(f"fps must be a positive number, got {fps!r}.")
    images = [Image.fromarray(a) for a in arr]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(int(round(1000 / fps)), 1),
            loop=0,
            optimize=False,
        )
    return path


# ---------------------------------------------------------------- renderer parts
def _set_renderer_params(renderer, latent):
    """Load one item's projected MLP weights into the renderer (as diffusers does)."""
    projected = renderer.params_proj(latent)
    for name, param in renderer.mlp.state_dict().items():
        key = f"nerstf.{name}"
        if key in projected:
            param.copy_(projected[key].squeeze(0))


def _turntable_cameras(n_frames: int, size: int):
    """``create_pan_cameras`` of diffusers with ``n_frames`` views and no repeated end."""
    import torch
    from diffusers.pipelines.shap_e.camera import DifferentiableProjectiveCamera

    origins, xs, ys, zs = [], [], [], []
    for theta in np.linspace(0, 2 * np.pi, num=n_frames, endpoint=False):
        z = np.array([np.sin(theta), np.cos(theta), -0.5])
        z /= np.sqrt(np.sum(z**2))
        x = np.array([np.cos(theta), -np.sin(theta), 0.0])
        origins.append(-z * 4)
        xs.append(x)
        ys.append(np.cross(z, x))
        zs.append(z)

    def stack(a):
        return torch.from_numpy(np.stack(a, axis=0)).float()

    return DifferentiableProjectiveCamera(
        origin=stack(origins),
        x=stack(xs),
        y=stack(ys),
        z=stack(zs),
        width=size,
        height=size,
        x_fov=0.7,
        y_fov=0.7,
        shape=(1, n_frames),
    )


def _render_turntable(renderer, latent, device, *, n_frames, size, n_coarse, n_fine, seed):
    """(n_frames, size, size, 3) float views in [0, 1] of one item."""
    import torch
    from diffusers.pipelines.shap_e.renderer import StratifiedRaySampler

    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)  # the ray samplers draw from the global generator
        _set_renderer_params(renderer, latent)
        rays = _turntable_cameras(n_frames, size).camera_rays.to(device)
        coarse = StratifiedRaySampler()
        chunks = []
        for start in range(0, rays.shape[1], _RAY_BATCH):
            batch = rays[:, start : start + _RAY_BATCH]
            _, fine, coarse_out = renderer.render_rays(batch, coarse, n_coarse)
            channels, _, _ = renderer.render_rays(batch, fine, n_fine, prev_model_out=coarse_out)
            chunks.append(channels)
    views = torch.cat(chunks, dim=1).view(n_frames, size, size, -1)
    return views.float().clamp(0, 1).cpu().numpy()


def _no_surface_reason(renderer) -> str:
    masks = getattr(getattr(renderer, "mesh_decoder", None), "masks", None)
    if masks is not None and not bool(masks.any()):
        return (
            "the renderer's marching-cubes lookup table (mesh_decoder.cases/masks) is all "
            "zeros, as in a randomly initialised renderer such as the 'tiny' model; the real "
            "Shap-E checkpoint carries it"
        )
    return "the decoded signed-distance field has no zero crossing inside the [-1, 1]^3 box"


def _decode_mesh(renderer, latent, device, grid_size):
    """The renderer's mesh of one item as numpy arrays, or None when it has no surface."""
    raw = []
    hook = renderer.mesh_decoder.register_forward_hook(lambda _m, _i, out: raw.append(out))
    try:
        mesh = renderer.decode_to_mesh(latent, device, grid_size=grid_size)
    except (RuntimeError, ValueError):
        # diffusers fails on its empty texture query when marching cubes found nothing
        if raw and len(raw[-1].faces) == 0:
            return None
        raise
    finally:
        hook.remove()
    if len(mesh.faces) == 0:
        return None
    colors = np.stack([mesh.vertex_channels[k].float().cpu().numpy() for k in "RGB"], axis=1)
    return (
        mesh.verts.float().cpu().numpy(),
        mesh.faces.cpu().numpy(),
        np.clip(colors, 0.0, 1.0),
    )


def _as_latents(latents, pipeline):
    import torch

    if isinstance(latents, ShapELatents):
        arr = latents.latents
    elif isinstance(latents, torch.Tensor):
        arr = latents.detach().float().cpu().numpy()
    elif isinstance(latents, (list, tuple)):
        arr = np.stack(
            [
                x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
                for x in latents
            ]
        )
    else:
        arr = np.asarray(latents)
    arr = np.asarray(arr, dtype=np.float32)
    shape = (
        int(pipeline.prior.config.num_embeddings),
        int(pipeline.prior.config.embedding_dim),
    )
    if arr.ndim != 3 or arr.shape[1:] != shape or len(arr) == 0:
        raise BadInputError(
            f"latents must have shape (n_items >= 1, {shape[0]}, {shape[1]}) (the prior's "
            f"num_embeddings, embedding_dim), got {arr.shape} instead."
        )
    if not np.all(np.isfinite(arr)):
        raise BadInputError("latents contains NaN or inf values.")
    return arr


def _check_names(names, n):
    if isinstance(names, (str, bytes)) or names is None:
        raise BadTypeError(
            f"names must be a sequence of {n} file names, got {type(names).__name__} instead."
        )
    names = list(names)
    if len(names) != n:
        raise BadInputError(f"names must have one entry per item: got {len(names)}, expected {n}.")
    for name in names:
        bad = (
            not isinstance(name, str)
            or name.strip() in ("", ".", "..")
            or any(ch in name for ch in ("/", "\\", "\0", os.sep))
        )
        if bad:
            raise BadInputError(
                f"names must be plain file names (no folder separators), got {name!r}."
            )
    if len(set(names)) != n:
        dup = sorted({x for x in names if names.count(x) > 1})
        raise BadInputError(f"names must be unique, got duplicates {dup}.")
    return names


def export_meshes(
    latents,
    out_dir,
    *,
    pipeline,
    names,
    formats=MESH_FORMATS,
    turntable: bool = True,
    n_frames: int = 20,
    frame_size: int = 64,
    grid_size: int = 128,
    n_coarse_samples: int = 64,
    n_fine_samples: int = 128,
    fps: float = 10.0,
    seed: int = 0,
    on_empty: str = "warn",
) -> dict:
    """Decode Shap-E latents to meshes and turntables and write them to ``out_dir``.

    Per item ``name``: ``<name>.ply`` and ``<name>.glb`` (the renderer's
    ``decode_to_mesh``: marching cubes on its signed-distance field, vertex
    colours from its texture head) and ``<name>_turntable.gif`` (``n_frames``
    volume-rendered views around the vertical axis). Every file is written under a
    temporary name and renamed when complete.

    Parameters
    ----------
    latents : ShapELatents, or array of shape (n_items, num_embeddings, embedding_dim)
        From :func:`reconstruct_3d` (a list of per-item arrays is accepted too).
    out_dir : str or path
        Created if missing.
    pipeline : diffusers.ShapEImg2ImgPipeline
        Its ``shap_e_renderer`` decodes the latents.
    names : sequence of str
        One plain file name (stem) per item, unique.
    formats : sequence of {'ply', 'glb'}
        Mesh files to write; ``()`` writes none (and skips mesh extraction).
    turntable : bool
        Write ``<name>_turntable.gif``.
    n_frames, frame_size : int
        Number of turntable views and their side in pixels (any size works).
    grid_size : int
        Side of the grid the signed-distance field is sampled on before marching
        cubes (128 as diffusers; cost grows as its cube).
    n_coarse_samples, n_fine_samples : int
        Ray samples per pixel of the renderer's coarse and importance passes.
    fps : float
        Turntable frame rate.
    seed : int
        Item ``i`` is rendered with the global torch generator seeded ``seed + i``
        (the ray samplers are random); the global state is restored afterwards.
    on_empty : {'warn', 'raise'}
        What to do when an item's field has no surface: ``'warn'`` logs a warning
        naming the item and writes no mesh file for it (never an empty or partial
        one; its turntable is still written), ``'raise'`` raises
        :class:`NoSurfaceError`.

    Returns
    -------
    paths : dict
        ``{name: {"ply": Path, "glb": Path, "turntable": Path}}`` holding the files
        written; an item without a surface has no ``"ply"``/``"glb"`` entries.
    """
    import torch

    _check_pipeline(pipeline)
    arr = _as_latents(latents, pipeline)
    names = _check_names(names, len(arr))
    if isinstance(formats, str):
        formats = (formats,)
    formats = tuple(formats)
    for fmt in formats:
        check_option("formats", fmt, MESH_FORMATS)
    if len(set(formats)) != len(formats):
        raise BadInputError(f"formats must not repeat a format, got {formats}.")
    n_frames = check_positive_int("n_frames", n_frames)
    frame_size = check_positive_int("frame_size", frame_size)
    grid_size = check_positive_int("grid_size", grid_size, minimum=4)
    n_coarse_samples = check_positive_int("n_coarse_samples", n_coarse_samples)
    n_fine_samples = check_positive_int("n_fine_samples", n_fine_samples)
    seed = check_positive_int("seed", seed, minimum=0)
    check_option("on_empty", on_empty, ("warn", "raise"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    renderer = pipeline.shap_e_renderer
    device = pipeline.device
    dtype = renderer.dtype
    writers = {"ply": write_ply, "glb": write_glb}
    written = {}
    for i, name in enumerate(names):
        latent = torch.from_numpy(arr[i : i + 1]).to(device=device, dtype=dtype)
        paths = {}
        if formats:
            mesh = _decode_mesh(renderer, latent, device, grid_size)
            if mesh is None:
                message = (
                    f"Shap-E item {i} ({name!r}) has no surface, so no mesh was written: "
                    f"{_no_surface_reason(renderer)}."
                )
                if on_empty == "raise":
                    raise NoSurfaceError(message)
                logger.warning(message)
            else:
                for fmt in formats:
                    paths[fmt] = writers[fmt](out_dir / f"{name}.{fmt}", *mesh)
        if turntable:
            frames = _render_turntable(
                renderer,
                latent,
                device,
                n_frames=n_frames,
                size=frame_size,
                n_coarse=n_coarse_samples,
                n_fine=n_fine_samples,
                seed=seed + i,
            )
            paths["turntable"] = write_turntable_gif(
                out_dir / f"{name}_turntable.gif", frames, fps=fps
            )
        written[name] = paths
    return written
