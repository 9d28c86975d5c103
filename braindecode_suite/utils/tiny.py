"""Tiny random-initialised models built from configs in code, for offline demos and tests.

No public weights for CLIP, Stable Diffusion, unCLIP, GIT or Shap-E can be had
offline, so the demo and the tests run the *real* loading and inference code on
tiny models whose weights are random (``torch.manual_seed(seed)`` before each
component is built). Their outputs are meaningless as pictures; what they show is
that the code path works end to end. Everything that loads a model accepts the
model name ``"tiny"`` (or ``"tiny:<seed>"``) and then reports that the weights are
random.

Components are saved with ``save_pretrained`` under
``$BDS_CACHE_DIR/tiny/<name>-s<seed>-v<version>`` (written atomically), so the
pipelines load them through the same ``from_pretrained`` call as real weights.

The CLIP tokenizer is real: it is built from the BPE vocabulary that open_clip
ships, and gives the same token ids as open_clip's tokenizer.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from .io import atomic_dir
from .validation import BadInputError

__all__ = [
    "TINY_OPEN_CLIP",
    "TINY_OPEN_CLIP_CONFIG",
    "clip_tokenizer",
    "clip_tokenizer_folder",
    "is_tiny",
    "parse_tiny",
    "register_tiny_open_clip",
    "tiny_cache_dir",
    "tiny_clip_image_processor",
    "tiny_clip_text_config",
    "tiny_clip_vision_config",
    "tiny_sd_components",
    "tiny_sd_img2img_folder",
    "tiny_unet_config",
]

#: bump when a tiny config changes, so stale cached folders are not reused
TINY_VERSION = 1

TINY_OPEN_CLIP = "bds-tiny-vit"
TINY_OPEN_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

#: width of the tiny Stable Diffusion text encoder (= UNet cross-attention dim)
TINY_SD_HIDDEN = 32


def is_tiny(name) -> bool:
    """True for ``"tiny"`` and ``"tiny:<seed>"``."""
    return isinstance(name, str) and (name == "tiny" or name.startswith("tiny:"))


def parse_tiny(name: str) -> int:
    """The seed of a ``"tiny"`` / ``"tiny:<seed>"`` model name."""
    if name == "tiny":
        return 0
    seed = name.partition(":")[2]
    if not seed.isdigit():
        raise BadInputError(
            f"model {name!r}: a tiny model is named 'tiny' or 'tiny:<seed>' with an integer "
            "seed >= 0."
        )
    return int(seed)


def tiny_cache_dir() -> Path:
    """``$BDS_CACHE_DIR/tiny`` (default ``~/.cache/braindecode_suite/tiny``)."""
    root = os.environ.get("BDS_CACHE_DIR") or Path.home() / ".cache" / "braindecode_suite"
    path = Path(root).expanduser() / "tiny"
    path.mkdir(parents=True, exist_ok=True)
    return path


def register_tiny_open_clip() -> str:
    """Register the tiny OpenCLIP config (idempotent); returns its model name."""
    import open_clip

    open_clip.factory._MODEL_CONFIGS.setdefault(TINY_OPEN_CLIP, TINY_OPEN_CLIP_CONFIG)
    return TINY_OPEN_CLIP


# ------------------------------------------------------------------------ tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    # the reversible byte -> printable-character map of GPT-2/CLIP BPE
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_tokenizer_folder() -> Path:
    """A folder with ``vocab.json`` + ``merges.txt`` of the CLIP BPE shipped by open_clip.

    The vocabulary is built as open_clip's ``SimpleTokenizer`` builds it (bytes, their
    ``</w>`` forms, the 48,894 merges, then the start/end tokens), so the ids agree.
    """
    folder = tiny_cache_dir() / f"clip-tokenizer-v{TINY_VERSION}"
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder
    import open_clip.tokenizer as oct_

    bpe_path = Path(oct_.default_bpe())
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with atomic_dir(folder) as tmp:
        (tmp / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
        (tmp / "merges.txt").write_text(
            "#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n"
        )
    return folder


def clip_tokenizer(model_max_length: int = 77):
    """A transformers ``CLIPTokenizer`` with open_clip's vocabulary (no download)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        str(clip_tokenizer_folder()), model_max_length=model_max_length
    )


# -------------------------------------------------------------- configs of tiny parts
def tiny_unet_config(cross_attention_dim: int = TINY_SD_HIDDEN, *, flat: bool = False) -> dict:
    """Keyword arguments of the tiny SD UNet (8×8 latents, blocks (32, 64)).

    ``flat=True`` names the blocks of Versatile Diffusion's ``UNetFlatConditionModel``
    (``...BlockFlat``) instead of ``UNet2DConditionModel``'s (``...Block2D``).
    """
    kind = "Flat" if flat else "2D"
    return {
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": (f"DownBlock{kind}", f"CrossAttnDownBlock{kind}"),
        "up_block_types": (f"CrossAttnUpBlock{kind}", f"UpBlock{kind}"),
        "cross_attention_dim": cross_attention_dim,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
    }


def tiny_clip_text_config(hidden_size: int = 32, **overrides):
    """A tiny ``CLIPTextConfig`` (2 layers, 4 heads) over the 49,408-token CLIP BPE."""
    from transformers import CLIPTextConfig

    kwargs = {
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": 49408,
        "max_position_embeddings": 77,
    }
    return CLIPTextConfig(**{**kwargs, **overrides})


def tiny_clip_vision_config(projection_dim: int, *, patch_size: int = 8, **overrides):
    """A tiny ``CLIPVisionConfig`` for 32-px images (width 32, 2 layers, 4 heads)."""
    from transformers import CLIPVisionConfig

    kwargs = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "image_size": 32,
        "patch_size": patch_size,
        "projection_dim": projection_dim,
    }
    return CLIPVisionConfig(**{**kwargs, **overrides})


def tiny_clip_image_processor(size: int = 32, **overrides):
    """A ``CLIPImageProcessor`` resizing and centre-cropping to ``size`` px (CLIP mean/std)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}, **overrides
    )


# -------------------------------------------------------------- Stable Diffusion parts
def tiny_sd_components(seed: int = 0, cross_attention_dim: int = TINY_SD_HIDDEN) -> dict:
    """Random tiny Stable Diffusion 1.x components (64-px images, 8× VAE downsampling).

    Returns a dict with ``vae``, ``unet``, ``text_encoder``, ``tokenizer`` and
    ``scheduler``, ready for ``StableDiffusionImg2ImgPipeline(**components, ...)``.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            block_out_channels=(16, 32, 32, 32),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=8,
            layers_per_block=1,
            sample_size=64,
        )
        torch.manual_seed(seed + 1)
        unet = UNet2DConditionModel(**tiny_unet_config(cross_attention_dim))
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(tiny_clip_text_config(cross_attention_dim))
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "vae": vae,
        "unet": unet,
        "text_encoder": text_encoder,
        "tokenizer": clip_tokenizer(),
        "scheduler": scheduler,
    }


def tiny_sd_img2img_folder(seed: int = 0, cross_attention_dim: int = TINY_SD_HIDDEN) -> Path:
    """A saved tiny ``StableDiffusionImg2ImgPipeline`` (``vae/`` is its VAE subfolder)."""
    from diffusers import StableDiffusionImg2ImgPipeline

    folder = tiny_cache_dir() / f"sd-img2img-d{cross_attention_dim}-s{seed}-v{TINY_VERSION}"
    if (folder / "model_index.json").is_file():
        return folder
    pipe = StableDiffusionImg2ImgPipeline(
        **tiny_sd_components(seed, cross_attention_dim),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    with atomic_dir(folder) as tmp:
        pipe.save_pretrained(tmp)
    return folder
