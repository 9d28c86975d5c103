"""Inference throughput: batched vs a one-image loop, for feature extraction and reconstruction.

    python benchmarks/inference.py [--section all|features|reconstruction] [--device auto]
        [--threads N] [--repeats 3]
        features:       [--n-images 64] [--extractors efficientnet_lite0 gabor]
        reconstruction: [--recon-images 32] [--steps 10] [--routes img2img] [--breakdown]

features: images per second through the shared batching helper at batch sizes 1, 4 and 16,
against a plain loop that calls the same model on one image at a time (no DataLoader, no
batching), measured in the same run; then `extract_features` on a cold cache against a
warm-cache re-run of the same call (which reads the stored file and computes nothing).

reconstruction: images per second of each reconstruction route (only ``img2img`` for now:
`reconstruct_img2img` on the tiny random Stable Diffusion img2img pipeline, 64×64 images from
4×8×8 latents) at batch sizes 1, 4 and 16, against the reference measured in the same run: a
plain Python loop that calls the same diffusers pipeline object on one image at a time with
its own `torch.Generator().manual_seed(seed + i)`, which is what a research script does. Both
sides do the same work (same steps, strength, guidance, unconditional embedding, seeds), and
the script checks it: it prints the largest difference between the batched images and the
loop's images (equal up to float noise, i.e. at most 1 grey level of 255). `--breakdown`
re-runs each configuration once with timers around the UNet, the VAE and the scheduler step
to show where the time goes (the rest is Python and pipeline overhead).

Every configuration is run once untimed (warm-up), then `--repeats` times; the median is
reported (reconstruction: the modes are timed in interleaved rounds, so load from other
processes falls on all of them; min-max are printed too). The torch CPU thread count is set
explicitly (`--threads`, default torch's own choice) and printed; on a small machine shared
with other jobs, multi-threaded runs can stall for seconds, and `--threads 1` gives steadier
figures. `--device cuda` gives the same tables on a GPU.

New routes (unCLIP, ControlNet, captions) are added as entries of RECON_ROUTES: a function
of the parsed arguments and the device that returns (batched, loop, pipeline), where
batched(batch_size) and loop() both return the n images as a uint8 array and pipeline is the
object whose UNet / VAE / scheduler `--breakdown` times.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import tempfile
import time
from collections import defaultdict

import numpy as np


def bench(fn, repeats=3):
    """Run fn once untimed (warm-up), then `repeats` times; return (median seconds, warm-up result)."""
    first = fn()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first


def _sync():
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# ================================================================== feature extraction
def images(n, size=256, seed=0):
    from skimage import data, transform

    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = base[i % len(base)]
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        out[i] = (transform.resize(img[y : y + s, x : x + s], (size, size)) * 255).astype(np.uint8)
    return out


def loop_baseline(extractor, imgs):
    """One image at a time, straight through the model: what a research script does."""
    import torch

    from braindecode_suite.utils.devices import resolve_device

    dev = resolve_device(extractor.device)
    with torch.inference_mode():
        for img in imgs:
            x = extractor.prepare(img[None]).to(dev)
            out = extractor._forward(x)
            for v in out.values():
                v.cpu()


def features_section(args):
    from braindecode_suite.features import extract_features, make_extractor

    imgs = images(args.n_images)
    n = len(imgs)
    print(f"== feature extraction: {n} images 256×256, device {args.device}")
    head = f"{'extractor':<22}{'mode':<22}{'img/s':>10}{'vs loop':>10}"
    print(head)
    print("-" * len(head))
    for kind in args.extractors:
        ext = make_extractor(kind, device=args.device)
        t_loop, _ = bench(lambda e=ext: loop_baseline(e, imgs), args.repeats)
        print(f"{kind:<22}{'loop, 1 image':<22}{n / t_loop:>10.1f}{1.0:>9.2f}x")
        for bs in (1, 4, 16):
            e = make_extractor(kind, device=args.device, batch_size=bs)
            t, _ = bench(lambda e=e: e.transform(imgs), args.repeats)
            print(f"{kind:<22}{f'batched, batch {bs}':<22}{n / t:>10.1f}{t_loop / t:>9.2f}x")
        with tempfile.TemporaryDirectory() as cache:
            ids = np.arange(n)
            e = make_extractor(kind, device=args.device, batch_size=16)
            t0 = time.perf_counter()
            extract_features(e, ids, lambda b: imgs[b], stimulus_set={"bench": n}, cache_dir=cache)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            extract_features(e, ids, lambda b: imgs[b], stimulus_set={"bench": n}, cache_dir=cache)
            warm = time.perf_counter() - t0
        print(f"{kind:<22}{'cache cold (compute)':<22}{n / cold:>10.1f}")
        print(
            f"{kind:<22}{'cache warm (read)':<22}{n / warm:>10.1f}"
            f"{'':>4}warm is {cold / warm:.0f}x faster than recomputing"
        )
    print()


# ====================================================================== reconstruction
def img2img_route(args, device):
    """Takagi-style img2img: our batched `reconstruct_img2img` vs a per-image pipeline loop.

    Returns (batched, loop, pipeline); both callables return uint8 images (n, 64, 64, 3).
    """
    import torch

    from braindecode_suite.reconstruction.diffusion import (
        load_img2img_pipeline,
        reconstruct_img2img,
    )
    from braindecode_suite.utils.tiny import tiny_sd_img2img_folder

    pipe = load_img2img_pipeline(str(tiny_sd_img2img_folder(args.seed)), device=str(device))
    n = args.recon_images
    g = torch.Generator().manual_seed(1234)
    latent_channels = pipe.vae.config.latent_channels
    z = torch.randn(n, latent_channels, 8, 8, generator=g)  # predicted latents (× scaling)
    c = torch.randn(n, 77, pipe.unet.config.cross_attention_dim, generator=g)  # predicted text
    common = {
        "strength": args.strength,
        "guidance_scale": args.guidance,
        "num_inference_steps": args.steps,
    }

    def batched(batch_size):
        return reconstruct_img2img(
            z, c, pipeline=pipe, batch_size=batch_size, seed=args.seed, **common
        )

    def loop():
        # what a research script does: decode the predicted latent to the init image, then
        # call the pipeline for that one image with its own seeded generator. The zero
        # unconditional embedding is the one reconstruct_img2img uses for guidance > 1.
        scaling = pipe.vae.config.scaling_factor
        out = np.empty((n, 64, 64, 3), np.uint8)
        for i in range(n):
            with torch.no_grad():
                decoded = pipe.vae.decode(z[i : i + 1].to(device) / scaling).sample
            init_image_i = (decoded / 2 + 0.5).clamp(0, 1)
            result = pipe(
                prompt_embeds=c[i : i + 1].to(device),
                negative_prompt_embeds=torch.zeros_like(c[i : i + 1]).to(device),
                image=init_image_i,
                generator=torch.Generator().manual_seed(args.seed + i),
                output_type="np",
                **common,
            )
            out[i] = (np.clip(result.images[0], 0, 1) * 255).round().astype(np.uint8)
        return out

    return batched, loop, pipe


#: route name -> factory(args, device) returning (batched(batch_size), loop(), pipeline)
RECON_ROUTES = {
    "img2img": img2img_route,
}


@contextlib.contextmanager
def component_timers(pipe, device):
    """Accumulate wall time in the pipeline's UNet, VAE encode/decode and scheduler step."""
    totals = defaultdict(float)
    counts = defaultdict(int)
    patched = []

    def wrap(obj, attr, label):
        original = getattr(obj, attr)

        def timed(*a, **k):
            if device.type == "cuda":
                _sync()
            t0 = time.perf_counter()
            result = original(*a, **k)
            if device.type == "cuda":
                _sync()
            totals[label] += time.perf_counter() - t0
            counts[label] += 1
            return result

        setattr(obj, attr, timed)  # instance attribute shadows the bound method
        patched.append((obj, attr))

    targets = [
        (getattr(pipe, "unet", None), "forward", "UNet forward"),
        (getattr(pipe, "vae", None), "decode", "VAE decode"),
        (getattr(pipe, "vae", None), "encode", "VAE encode"),
        (getattr(pipe, "scheduler", None), "step", "scheduler step"),
    ]
    for obj, attr, label in targets:
        if obj is not None and hasattr(obj, attr):
            wrap(obj, attr, label)
    try:
        yield totals, counts
    finally:
        for obj, attr in patched:
            delattr(obj, attr)


def bench_interleaved(fns, repeats=3):
    """Warm up each of `fns` once, then time them in turn, `repeats` rounds.

    Interleaving the configurations spreads any load from other processes over all of them
    instead of one. Returns, per function, (median seconds, list of timings, warm-up result).
    """
    firsts = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            times[k].append(time.perf_counter() - t0)
    return [(statistics.median(t), t, f) for t, f in zip(times, firsts, strict=True)]


def reconstruction_section(args):
    from braindecode_suite.utils.devices import resolve_device

    device = resolve_device(args.device)
    n = args.recon_images
    print(
        f"== reconstruction: {n} images 64×64 (latents 4×8×8), tiny random SD pipelines, "
        f"device {device}, {args.steps} steps × strength {args.strength} "
        f"(= {int(args.steps * args.strength)} denoising steps), guidance {args.guidance}; "
        f"each mode warmed up once, then timed {args.repeats}× interleaved; median reported"
    )
    head = (
        f"{'route':<10}{'mode':<20}{'img/s':>9}{'vs loop':>9}{'s/run':>8}"
        f"{'(min-max s)':>15}{'max |Δ| vs loop':>26}"
    )
    for route in args.routes:
        batched, loop, pipe = RECON_ROUTES[route](args, device)
        names = ["loop, 1 image"] + [f"batched, batch {bs}" for bs in args.batch_sizes]
        fns = [loop] + [functools.partial(batched, bs) for bs in args.batch_sizes]
        results = bench_interleaved(fns, args.repeats)
        t_loop, _, ref = results[0]
        print(head)
        print("-" * len(head))
        for k, (name, (t, times, out)) in enumerate(zip(names, results, strict=True)):
            if k == 0:
                check = "(reference)"
            else:
                diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
                check = f"{diff.max()}/255 on {(diff > 0).mean():.3%} of values"
            print(
                f"{route:<10}{name:<20}{n / t:>9.2f}{t_loop / t:>8.2f}x{t:>8.2f}"
                f"{f'({min(times):.2f}-{max(times):.2f})':>15}{check:>26}"
            )
        if args.breakdown:
            _print_breakdown(route, pipe, device, list(zip(names, fns, strict=True)))
        print()


def _print_breakdown(route, pipe, device, rows):
    labels = ["UNet forward", "VAE decode", "VAE encode", "scheduler step"]
    print(f"\n{route}: where one run's time goes (seconds; calls in brackets; 1 extra run each)")
    head = f"{'mode':<20}{'total':>8}" + "".join(f"{lab:>20}" for lab in labels)
    head += f"{'rest (python etc)':>20}"
    print(head)
    print("-" * len(head))
    for name, fn in rows:
        with component_timers(pipe, device) as (totals, counts):
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            total = time.perf_counter() - t0
        cells = "".join(f"{f'{totals[lab]:.2f} ({counts[lab]})':>20}" for lab in labels)
        rest = total - sum(totals[lab] for lab in labels)
        print(f"{name:<20}{total:>8.2f}{cells}{rest:>20.2f}")


# ================================================================================ main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--section", choices=["all", "features", "reconstruction"], default="all")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    ap.add_argument("--n-images", type=int, default=64, help="feature extraction images")
    ap.add_argument("--extractors", nargs="+", default=["efficientnet_lite0", "gabor"])
    ap.add_argument("--recon-images", type=int, default=32, help="reconstructed images")
    ap.add_argument("--routes", nargs="+", choices=sorted(RECON_ROUTES), default=["img2img"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--steps", type=int, default=10, help="num_inference_steps")
    ap.add_argument("--strength", type=float, default=0.75)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="time UNet / VAE / scheduler inside one extra run per configuration",
    )
    args = ap.parse_args()

    t_start = time.perf_counter()
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.set_num_threads(torch.get_num_threads())  # explicit either way
    print(
        f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
        f"os.cpu_count() = {os.cpu_count()}, "
        f"cuda {'available' if torch.cuda.is_available() else 'not available'}"
    )
    if args.section in ("all", "features"):
        features_section(args)
    if args.section in ("all", "reconstruction"):
        reconstruction_section(args)
    print(f"total script time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
