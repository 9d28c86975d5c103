"""Stable Diffusion VAE latents (diffusers ``AutoencoderKL``).

The low-level target of reconstruction pipelines (Brain-Diffuser's VDVAE/SD
latents, MindEye's low-level branch): the image resized to ``size``×``size``,
scaled to [-1, 1] and encoded; the field is the posterior mean (or a seeded
sample) times ``vae.config.scaling_factor`` — the latents a diffusion UNet sees.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path

from ..utils.tiny import is_tiny, parse_tiny, tiny_sd_img2img_folder
from ..utils.validation import BadInputError, check_positive_int
from .extractors import Extractor, _resize_nchw, _sha256

__all__ = ["VAELatentExtractor"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def _import_autoencoder():
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise BadInputError("The VAE extractor needs diffusers: `pip install diffusers`.") from None
    return AutoencoderKL


class VAELatentExtractor(Extractor):
    """Latents of a diffusers ``AutoencoderKL``.

    Parameters
    ----------
    model : str
        A Hugging Face model id (``'stabilityai/sd-vae-ft-mse'``; downloaded once into
        the Hugging Face cache), a local folder written by ``save_pretrained``, or
        ``'tiny'`` / ``'tiny:<seed>'``: the random VAE of the tiny Stable Diffusion
        pipeline of :mod:`braindecode_suite.utils.tiny` (offline demos and tests).
    subfolder : str | None
        Subfolder holding the VAE, e.g. ``'vae'`` inside a full Stable Diffusion repo.
    size : int
        Images are resized (bilinear, antialiased) to ``size``×``size`` first; must be a
        multiple of the VAE's downsampling factor (8 for Stable Diffusion).
    sample : bool
        False: the posterior mean. True: a sample ``mean + std * noise`` whose noise is
        drawn per image from a generator seeded by ``seed`` and the image's pixels, so
        it does not depend on batch size or chunking.
    seed : int
        Seed of the sampling noise (used when ``sample=True``).
    **kw
        ``batch_size``, ``device``, ``dtype`` of :class:`Extractor`.

    Notes
    -----
    Field ``latents`` has shape (latent_channels, size / f, size / f) with
    f = 2 ** (len(block_out_channels) - 1). Latents are ``(z - shift_factor) *
    scaling_factor`` (``shift_factor`` is None, i.e. 0, for SD 1.x/2.x VAEs).
    """

    kind = "vae"

    def __init__(
        self,
        model: str = "stabilityai/sd-vae-ft-mse",
        subfolder: str | None = None,
        size: int = 512,
        sample: bool = False,
        seed: int = 0,
        **kw,
    ):
        super().__init__(**kw)
        self.model = model
        self.subfolder = subfolder
        self.size = check_positive_int("size", size, minimum=8)
        self.sample = bool(sample)
        self.seed = check_positive_int("seed", seed, minimum=0)

    # -- where the weights are ----------------------------------------------------------------
    @cached_property
    def _local_dir(self) -> Path | None:
        if is_tiny(self.model):
            # the VAE of the tiny random Stable Diffusion pipeline (utils/tiny.py), so
            # latents extracted here decode with that pipeline
            return tiny_sd_img2img_folder(parse_tiny(self.model)) / "vae"
        path = Path(str(self.model)).expanduser()
        if path.is_dir():
            return path / self.subfolder if self.subfolder else path
        if str(self.model).startswith(("/", ".", "~")) or str(self.model).count("/") > 1:
            raise BadInputError(f"model: local VAE folder {str(self.model)!r} does not exist.")
        return None

    def _missing(self, err: Exception) -> BadInputError:
        where = f" (subfolder {self.subfolder!r})" if self.subfolder else ""
        if self._local_dir is not None:
            return BadInputError(
                f"Could not load the VAE from the local folder {str(self._local_dir)!r}: {err}"
            )
        sub = f" --include '{self.subfolder}/*'" if self.subfolder else ""
        return BadInputError(
            f"The VAE {self.model!r}{where} is not available offline (not in the Hugging Face "
            f"cache and no network). Download it once with network: "
            f"`huggingface-cli download {self.model}{sub}` (it goes to the Hugging Face cache, "
            "honour HF_HOME), or pass a local folder written by save_pretrained as model=. "
            f"Original error: {err}"
        )

    def _load_kwargs(self) -> tuple[str, dict]:
        if self._local_dir is not None:
            return str(self._local_dir), {}
        return str(self.model), ({"subfolder": self.subfolder} if self.subfolder else {})

    @cached_property
    def config(self) -> dict:
        """The VAE's config (read without loading the weights)."""
        if "vae" in self.__dict__:
            return dict(self.vae.config)
        AutoencoderKL = _import_autoencoder()
        name, kwargs = self._load_kwargs()
        try:
            return dict(AutoencoderKL.load_config(name, **kwargs))
        except OSError as err:
            raise self._missing(err) from err

    @cached_property
    def vae(self):
        """The loaded ``AutoencoderKL``, in eval mode, on the device."""
        from ..utils.devices import resolve_device

        AutoencoderKL = _import_autoencoder()
        name, kwargs = self._load_kwargs()
        try:
            vae = AutoencoderKL.from_pretrained(name, **kwargs)
        except OSError as err:
            raise self._missing(err) from err
        return vae.eval().to(resolve_device(self.device))

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.config["block_out_channels"]) - 1)

    # -- extractor contract -----------------------------------------------------------------
    def params(self):
        return {
            "size": self.size,
            "sample": self.sample,
            "seed": self.seed if self.sample else None,
        }

    def weights_id(self):
        import diffusers

        out = {"weights": str(self.model), "subfolder": self.subfolder}
        if self._local_dir is not None:
            files = sorted(
                p
                for p in self._local_dir.iterdir()
                if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES)
            )
            if not files:
                raise BadInputError(f"model: no weight file in {str(self._local_dir)!r}.")
            out["weights"] = f"local/{self._local_dir.name}"
            out["weights_sha256"] = {p.name: _sha256(p) for p in files}
        return {**out, "diffusers": diffusers.__version__}

    def fields(self):
        f = self.downsampling
        if self.size % f:
            raise BadInputError(
                f"size={self.size} is not a multiple of the VAE's downsampling factor {f}; "
                f"use e.g. size={max(f, self.size // f * f)}."
            )
        n = self.size // f
        return {"latents": ((int(self.config["latent_channels"]), n, n), "float32")}

    def prepare(self, images):
        """Images (n, H, W, 3) -> float tensor (n, 3, H, W) in [0, 1]; loads the VAE first."""
        self.fields()
        self.vae  # noqa: B018 - load outside inference mode; fail before batching
        return super().prepare(images)

    def _noise(self, x, shape):
        """Per-image noise seeded by ``seed`` and the image's pixels (batch-independent)."""
        import torch

        pixels = x.detach().float().cpu().contiguous().numpy()
        out = []
        for img in pixels:
            digest = hashlib.sha256(self.seed.to_bytes(8, "little") + img.tobytes()).digest()
            gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
            out.append(torch.randn(shape, generator=gen))
        return torch.stack(out)

    def _forward(self, x):
        vae = self.vae
        inp = _resize_nchw(x, self.size).clamp(0, 1) * 2 - 1
        dist = vae.encode(inp.to(vae.dtype)).latent_dist
        z = dist.mean
        if self.sample:
            z = z + dist.std * self._noise(x, z.shape[1:]).to(z.device, z.dtype)
        shift = vae.config.get("shift_factor") or 0.0
        return {"latents": (z - shift) * vae.config.scaling_factor}
