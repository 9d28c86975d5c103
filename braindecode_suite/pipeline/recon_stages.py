"""Stage adapters of the diffusion, caption and 3D reconstruction routes.

Each route reads decoded features (the ``predictions`` store of a ridge stage)
and, where it refines a coarse image, the ``reconstructions`` of an earlier route
(pick which with the stage's ``inputs:``). Models are named as in the library:
a Hugging Face id, a local folder, or ``tiny`` for a random tiny model built in
code (offline demos; the report then says the weights are random).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from ..features import FeatureStore
from ..utils.logging import logger
from ..utils.tiny import is_tiny
from ..utils.validation import BadInputError
from .base import Stage, StageConfig, register_stage

__all__ = ["read_prediction", "write_reconstructions"]


def read_prediction(stage: Stage, preds: FeatureStore, key: str, what: str) -> np.ndarray:
    """A decoded field of the predictions store, with a clear error when it is absent."""
    if key not in preds.fields:
        raise BadInputError(
            f"stages.{stage.name}.{what}: {key!r} is not among the decoded features "
            f"{preds.fields}; add it to the ridge stage's targets."
        )
    return preds.read(key)


def write_reconstructions(ctx, ids, images: np.ndarray, attrs: dict) -> None:
    """PNGs under ``images/`` and the ``reconstructions`` store (uint8 images)."""
    from PIL import Image

    png_dir = ctx.output("images", "images")
    png_dir.mkdir(exist_ok=True)
    for sid, img in zip(ids, images, strict=True):
        Image.fromarray(img).save(png_dir / f"recon_{sid}.png")
    with FeatureStore.open_writer(
        ctx.output("reconstructions", "reconstructions.h5"),
        ids,
        {"image": (tuple(images.shape[1:]), "uint8")},
        attrs=attrs,
    ) as w:
        w.append(ids, {"image": images})


def _init_images(stage: Stage, ctx, ids, size: int | None) -> np.ndarray:
    """The earlier route's reconstructions of ``ids``, resized to ``size``."""
    from PIL import Image

    if not ctx.has_input("reconstructions"):
        raise BadInputError(
            f"stages.{stage.name}.init: 'reconstructions' needs an earlier stage that "
            "writes reconstructions (e.g. a 'reconstruct' stage with method lowlevel)."
        )
    store = FeatureStore(ctx.input("reconstructions"))
    missing = np.setdiff1d(ids, store.stimulus_ids)
    if len(missing):
        raise BadInputError(
            f"stages.{stage.name}: the init reconstructions lack {len(missing)} test stimuli "
            f"(e.g. {missing[:3].tolist()})."
        )
    imgs = store.read("image", ids)
    if size is None or imgs.shape[1:3] == (size, size):
        return imgs
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in imgs]
    )


class _DiffusionConfig(StageConfig):
    pipeline: str
    init: str = Field(
        "reconstructions",
        description="'reconstructions' (an earlier route's images, e.g. the blurry "
        "low-level one), a decoded VAE-latent field such as 'vae.latents', or (unclip only) "
        "'none': no init image, pure generation (needs strength 1.0 and a size)",
    )
    size: int | None = Field(None, ge=16)
    strength: float = Field(0.75, gt=0, le=1)
    guidance_scale: float = Field(7.5, ge=1)
    num_inference_steps: int = Field(50, ge=1)
    batch_size: int = Field(4, ge=1)
    dtype: str = Field("float32", pattern="^(float32|float16|bfloat16)$")


def _weights_note(name: str) -> str:
    return "random tiny weights (offline demo)" if is_tiny(name) else f"weights {name!r}"


@register_stage
class ReconstructImg2Img(Stage):
    """Takagi & Nishimoto (init latents + text conditioning) and MindEye2 (blurry init +
    image tokens) through Stable Diffusion img2img, optionally with a depth ControlNet."""

    kind = "reconstruct_img2img"
    reads = ("predictions",)
    optional_reads = ("reconstructions",)
    writes = ("reconstructions",)

    class Config(_DiffusionConfig):
        pipeline: str = "runwayml/stable-diffusion-v1-5"
        conditioning: str = Field(
            description="decoded conditioning tokens the UNet attends to, e.g. "
            "'clip_text.tokens' (Takagi) or 'clip_image.hidden' (MindEye2 style)"
        )
        guidance_scale: float = Field(5.0, ge=1)
        depth: str | None = Field(None, description="decoded depth field -> depth ControlNet")
        controlnet: str = "lllyasviel/sd-controlnet-depth"
        controlnet_conditioning_scale: float = Field(1.0, ge=0)

    def run(self, ctx):
        c = self.config
        preds = FeatureStore(ctx.input("predictions"))
        ids = preds.stimulus_ids
        cond = read_prediction(self, preds, c.conditioning, "conditioning")
        if cond.ndim != 3:
            raise BadInputError(
                f"stages.{self.name}.conditioning: {c.conditioning!r} must be tokens "
                f"(n, seq_len, dim), got shape {cond.shape[1:]} per stimulus."
            )
        if c.init == "reconstructions":
            init_latents, init_images = None, _init_images(self, ctx, ids, c.size)
        else:
            init_latents = read_prediction(self, preds, c.init, "init")
            init_images = None
        kw = dict(
            strength=c.strength,
            guidance_scale=c.guidance_scale,
            num_inference_steps=c.num_inference_steps,
            seed=ctx.seed,
            batch_size=c.batch_size,
        )
        if c.depth is None:
            from ..reconstruction import load_img2img_pipeline, reconstruct_img2img

            pipe = load_img2img_pipeline(
                c.pipeline, ctx.device, c.dtype, cross_attention_dim=cond.shape[2]
            )
            images = reconstruct_img2img(
                init_latents, cond, pipeline=pipe, init_images=init_images, **kw
            )
        else:
            from ..reconstruction.controlnet import (
                load_controlnet_img2img_pipeline,
                reconstruct_img2img_depth,
            )

            if init_latents is None:
                raise BadInputError(
                    f"stages.{self.name}.init: the depth ControlNet route starts from decoded "
                    "VAE latents; set init to a latent field such as 'vae.latents'."
                )
            depth = read_prediction(self, preds, c.depth, "depth")
            pipe = load_controlnet_img2img_pipeline(
                c.pipeline, controlnet=c.controlnet, device=ctx.device, dtype=c.dtype
            )
            images = reconstruct_img2img_depth(
                init_latents,
                cond,
                np.clip(depth, 0, 1),
                pipeline=pipe,
                controlnet_conditioning_scale=c.controlnet_conditioning_scale,
                **kw,
            )
        logger.info("%s: %d images reconstructed (%s)", self.name, len(ids), c.pipeline)
        write_reconstructions(
            ctx,
            ids,
            images,
            {"method": self.kind, "pipeline": c.pipeline, "weights": _weights_note(c.pipeline)},
        )


@register_stage
class ReconstructUnCLIP(Stage):
    """Brain-Diffuser style: a low-level init refined by Stable unCLIP (or Versatile
    Diffusion) conditioned on decoded CLIP image (and text) embeddings."""

    kind = "reconstruct_unclip"
    reads = ("predictions",)
    optional_reads = ("reconstructions",)
    writes = ("reconstructions",)

    class Config(_DiffusionConfig):
        pipeline: str = "stabilityai/stable-diffusion-2-1-unclip"
        model: str = Field("unclip", pattern="^(unclip|versatile)$")
        image_embeds: str = Field(
            description="decoded CLIP image embedding (unclip: pooled, e.g. 'clip_image.embeds';"
            " versatile: tokens, e.g. 'clip_image.projected')"
        )
        text_embeds: str | None = Field(
            None, description="decoded CLIP text tokens (optional for unclip, needed by versatile)"
        )
        noise_level: int = Field(0, ge=0)
        mix_ratio: float = Field(0.4, ge=0, le=1)

        @model_validator(mode="after")
        def _versatile_needs_text(self):
            if self.model == "versatile" and self.text_embeds is None:
                raise ValueError("model 'versatile' needs text_embeds (decoded CLIP text tokens)")
            return self

    def run(self, ctx):
        from ..reconstruction import unclip

        c = self.config
        preds = FeatureStore(ctx.input("predictions"))
        ids = preds.stimulus_ids
        image_embeds = read_prediction(self, preds, c.image_embeds, "image_embeds")
        text = read_prediction(self, preds, c.text_embeds, "text_embeds") if c.text_embeds else None
        if c.model == "unclip":
            pipe = unclip.load_unclip_pipeline(c.pipeline, ctx.device, c.dtype)
        else:
            pipe = unclip.load_versatile_pipeline(c.pipeline, ctx.device, c.dtype)
        if c.init == "none":  # pure generation from the embeddings (EEG/MEG: no low-level route)
            if c.strength != 1.0 or c.size is None:
                raise BadInputError(
                    f"stages.{self.name}.init: 'none' (no init image) needs strength: 1.0 and "
                    f"a size, got strength={c.strength} and size={c.size}."
                )
            init = np.full((len(ids), c.size, c.size, 3), 127, dtype=np.uint8)
        elif c.init == "reconstructions":
            init = _init_images(self, ctx, ids, c.size)
        else:
            init = _decode_latents(read_prediction(self, preds, c.init, "init"), pipe.vae)
        kw = dict(
            strength=c.strength,
            guidance_scale=c.guidance_scale,
            num_inference_steps=c.num_inference_steps,
            seed=ctx.seed,
            batch_size=c.batch_size,
        )
        if c.model == "unclip":
            images = unclip.reconstruct_unclip(
                init,
                image_embeds,
                pipeline=pipe,
                prompt_embeds=text,
                noise_level=c.noise_level,
                **kw,
            )
        else:
            images = unclip.reconstruct_versatile(
                init, image_embeds, text, pipeline=pipe, mix_ratio=c.mix_ratio, **kw
            )
        write_reconstructions(
            ctx,
            ids,
            images,
            {"method": f"{self.kind}:{c.model}", "pipeline": c.pipeline,
             "weights": _weights_note(c.pipeline)},
        )  # fmt: skip


def _decode_latents(z: np.ndarray, vae) -> np.ndarray:
    """Decoded VAE latents (scaled as the UNet sees them) -> uint8 images, via ``vae``."""
    import torch

    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(z)).to(vae.device, vae.dtype)
        x = vae.decode(z / vae.config.scaling_factor).sample
    x = (x.float().cpu().clamp(-1, 1) + 1) * 127.5
    return x.round().byte().permute(0, 2, 3, 1).numpy()


@register_stage
class Reconstruct3D(Stage):
    """Brain3D style: Shap-E image-to-3D from an earlier route's images or from decoded
    CLIP image tokens; meshes (.ply/.glb) and turntable GIFs."""

    kind = "reconstruct_3d"
    reads = ("predictions",)
    optional_reads = ("reconstructions",)
    writes = ("meshes",)

    class Config(StageConfig):
        pipeline: str = "openai/shap-e-img2img"
        source: str = Field(
            "reconstructions",
            description="'reconstructions' (an earlier route's images) or a decoded CLIP "
            "image-token field matching Shap-E's image encoder (256 x 1024 for ViT-L/14)",
        )
        max_items: int | None = Field(None, ge=1)
        guidance_scale: float = Field(3.0, ge=1)
        num_inference_steps: int = Field(64, ge=1)
        batch_size: int = Field(4, ge=1)
        formats: list[str] = Field(default_factory=lambda: ["ply", "glb"])
        turntable: bool = True
        n_frames: int = Field(20, ge=1)
        frame_size: int = Field(64, ge=8)
        grid_size: int = Field(128, ge=8)
        n_coarse_samples: int = Field(64, ge=1)
        n_fine_samples: int = Field(128, ge=1)
        dtype: str = Field("float32", pattern="^(float32|float16|bfloat16)$")

    def run(self, ctx):
        from ..reconstruction.shape3d import export_meshes, load_shap_e_pipeline, reconstruct_3d
        from ..utils.io import write_json_atomic

        c = self.config
        preds = FeatureStore(ctx.input("predictions"))
        ids = preds.stimulus_ids[: c.max_items]
        pipe = load_shap_e_pipeline(c.pipeline, ctx.device, c.dtype)
        kw = dict(
            pipeline=pipe,
            guidance_scale=c.guidance_scale,
            num_inference_steps=c.num_inference_steps,
            seed=ctx.seed,
            batch_size=c.batch_size,
        )
        if c.source == "reconstructions":
            latents = reconstruct_3d(images=_init_images(self, ctx, ids, None), **kw)
        else:
            tokens = read_prediction(self, preds, c.source, "source")[: len(ids)]
            latents = reconstruct_3d(image_embeds=tokens, **kw)
        out_dir = ctx.output("meshes", "meshes")
        out_dir.mkdir(exist_ok=True)
        written = export_meshes(
            latents,
            out_dir,
            pipeline=pipe,
            names=[f"stim_{sid}" for sid in ids],
            formats=tuple(c.formats),
            turntable=c.turntable,
            n_frames=c.n_frames,
            frame_size=c.frame_size,
            grid_size=c.grid_size,
            n_coarse_samples=c.n_coarse_samples,
            n_fine_samples=c.n_fine_samples,
            seed=ctx.seed,
        )
        np.save(out_dir / "shap_e_latents.npy", latents.latents)
        index = {name: {k: p.name for k, p in files.items()} for name, files in written.items()}
        no_surface = [n for n, files in index.items() if not set(c.formats) & set(files)]
        write_json_atomic(
            out_dir / "index.json",
            {"items": index, "no_surface": no_surface, "weights": _weights_note(c.pipeline)},
        )
        ctx.extra["meshes"] = {"n_items": len(ids), "n_without_surface": len(no_surface)}


@register_stage
class Caption(Stage):
    """Captions from decoded embeddings: caption-bank retrieval (baseline) or a CLIP-prefix
    decoder (ClipCap) trained here on the training stimuli's captions."""

    kind = "caption"
    reads = ("predictions", "features", "stimuli", "trials")
    writes = ("captions",)

    class Config(StageConfig):
        method: str = Field("retrieval", pattern="^(retrieval|clip_prefix)$")
        source: str = Field(
            description="decoded embedding field: CLIP text embeds for retrieval (e.g. "
            "'clip_text.embeds'), CLIP image embeds for clip_prefix (e.g. 'clip_image.embeds')"
        )
        model: str = Field("gpt2", description="clip_prefix: the language model (id, folder, tiny)")
        tokenizer: str = Field("gpt2", description="clip_prefix: tokenizer id/folder, or 'clip'")
        prefix_length: int = Field(10, ge=1)
        captions_per_image: int | None = Field(
            None, ge=1, description="clip_prefix: train on the first N captions of each image"
        )
        epochs: int = Field(10, ge=1)
        lr: float = Field(2e-5, gt=0)
        batch_size: int = Field(32, ge=1)
        max_new_tokens: int = Field(20, ge=1)
        num_beams: int = Field(1, ge=1)

    def _train_data(self, ctx, features):
        """Training stimuli ids, their true ``source`` features and their captions."""
        import json

        from ..datasets import read_nsd_captions
        from ._artifacts import load_trials

        trials = load_trials(ctx.input("trials"))
        train_ids = np.unique(trials.stimulus_ids[trials.split == "train"])
        name, _, field = self.config.source.partition(".")
        if name not in features or field not in features[name]["fields"]:
            raise BadInputError(
                f"stages.{self.name}.source: {self.config.source!r} is not a feature field "
                f"of the features stage ({sorted(features)})."
            )
        true = FeatureStore(features[name]["path"]).read(field, train_ids)
        stim = json.loads(ctx.input("stimuli").read_text())
        if not stim.get("nsd_root"):
            raise BadInputError(
                f"stages.{self.name}: the data stage recorded no NSD root to read captions from."
            )
        return (
            train_ids,
            true.reshape(len(true), -1),
            read_nsd_captions(stim["nsd_root"], train_ids),
        )

    def run(self, ctx):
        import json

        from ..utils.io import write_json_atomic

        c = self.config
        preds = FeatureStore(ctx.input("predictions"))
        ids = preds.stimulus_ids
        pred = read_prediction(self, preds, c.source, "source").reshape(len(ids), -1)
        features = json.loads(ctx.input("features").read_text())
        train_ids, true, caps = self._train_data(ctx, features)
        if c.method == "retrieval":
            from ..reconstruction.captions import retrieve_captions

            out = retrieve_captions(pred, true, [cs[0] for cs in caps])
            weights = "no model: nearest training caption by cosine similarity"
        else:
            from ..reconstruction.captions import load_clip_prefix_captioner

            tok = _load_tokenizer(c.tokenizer)
            cap = load_clip_prefix_captioner(
                c.model, ctx.device, clip_dim=true.shape[1], prefix_length=c.prefix_length,
                seed=ctx.seed,
            )  # fmt: skip
            per = c.captions_per_image
            pairs = [(e, s) for e, cs in zip(true, caps, strict=True) for s in cs[:per]]
            losses = cap.fit(
                np.stack([e for e, _ in pairs]),
                [s for _, s in pairs],
                tok,
                epochs=c.epochs,
                lr=c.lr,
                batch_size=c.batch_size,
                seed=ctx.seed,
            )
            cap.save_pretrained(ctx.output("captioner", "captioner"))
            out = cap.generate(pred, tok, max_new_tokens=c.max_new_tokens, num_beams=c.num_beams)
            weights = _weights_note(c.model)
            ctx.extra["fit_loss"] = {"first": float(losses[0]), "last": float(losses[-1])}
        write_json_atomic(
            ctx.output("captions", "captions.json"),
            {
                "method": c.method,
                "weights": weights,
                "n_train_stimuli": len(train_ids),
                "captions": {str(s): t for s, t in zip(ids, out, strict=True)},
            },
        )


def _load_tokenizer(name: str):
    if name == "clip":
        from ..utils.tiny import clip_tokenizer

        return clip_tokenizer()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except OSError as err:
        raise BadInputError(
            f"tokenizer {name!r} is not available offline: {err}. Download it once with "
            f"`huggingface-cli download {name}`, or use tokenizer: clip (ships with open_clip)."
        ) from err
