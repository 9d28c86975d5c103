"""Inference throughput: batched feature extraction vs a one-image loop; cache vs recompute.

    python benchmarks/inference.py [--n-images 64] [--extractors efficientnet_lite0 gabor]

For each extractor: images per second through the shared batching helper at batch sizes 1, 4
and 16, against a plain loop that calls the same model on one image at a time (no DataLoader,
no batching), measured in the same run; then `extract_features` on a cold cache against a
warm-cache re-run of the same call (which reads the stored file and computes nothing).
Runs on CUDA too when one is present (`--device cuda`).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


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


def bench(fn, repeats=2):
    fn()  # warm-up (model load, allocations)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--extractors", nargs="+", default=["efficientnet_lite0", "gabor"])
    args = ap.parse_args()

    from braindecode_suite.features import extract_features, make_extractor

    imgs = images(args.n_images)
    n = len(imgs)
    print(f"{n} images 256×256, device {args.device}")
    head = f"{'extractor':<22}{'mode':<22}{'img/s':>10}{'vs loop':>10}"
    print(head)
    print("-" * len(head))
    for kind in args.extractors:
        ext = make_extractor(kind, device=args.device)
        t_loop = bench(lambda e=ext: loop_baseline(e, imgs))
        print(f"{kind:<22}{'loop, 1 image':<22}{n / t_loop:>10.1f}{1.0:>9.2f}x")
        for bs in (1, 4, 16):
            e = make_extractor(kind, device=args.device, batch_size=bs)
            t = bench(lambda e=e: e.transform(imgs))
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


if __name__ == "__main__":
    main()
