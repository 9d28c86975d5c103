"""Evaluation throughput: the MindEye2 protocol batched vs the per-image loop of research code.

    python benchmarks/evaluation.py [--n 1000] [--batch-sizes 8,32,64] [--clip tiny|vit-l14]
        [--device auto|cpu|cuda] [--threads N] [--repeats 3] [--warmup 8]
        [--low-level-only | --skip-low-level]

Feature metrics: `evaluate_protocol(recon, gt, protocol="mindeye2")` with all its feature
metrics (AlexNet(2), AlexNet(5), Inception, CLIP two-way identification; EfficientNet-B1, SwAV
correlation distance; each with its bootstrap interval) at batch sizes 8, 32 and `--batch-size`,
against the reference measured in the same run: for each image separately, resize to 256 px,
then per network the torchvision transforms (Resize without antialiasing, Normalize) and one
forward pass through `create_feature_extractor(model, return_nodes=[layer])` (CLIP: the visual
tower, i.e. `encode_image`); the features are scored as MindEye's code does (`np.corrcoef`
two-way identification, `scipy.spatial.distance.correlation`). Both use the same network
objects; the agreement table is |loop - batched| of each final metric (float noise expected).

No published weights exist offline: every network is random (`weights=None`), which does not
change the speed; the metric values mean nothing. `--clip tiny`: a tiny random open_clip ViT
on 32 px inputs (the protocol's transform at 32 instead of 224 px); `--clip vit-l14`: a random
ViT-L/14 at 224 px (the real cost). PixCorr + SSIM (numpy / scikit-image) are timed separately:
`evaluate_protocol` against a per-pair loop (425 px, `np.corrcoef`, `structural_similarity`).

Each mode runs once on `--warmup` pairs, then all modes are timed in `--repeats` interleaved
rounds on the `--n` pairs (load from other processes falls on all of them); medians are shown
as image pairs per second (a pair is two images through every network).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import time
from collections import defaultdict

import numpy as np

PROTOCOL = "mindeye2"
LOW = ("PixCorr", "SSIM")
SSIM_KW = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 1}
LABELS = {"alexnet": "AlexNet", "inception_v3": "Incep", "clip_vit_l14": "CLIP"}
LABELS |= {"efficientnet_b1": "EffNet", "swav_resnet50": "SwAV"}


def make_pairs(n, size=256, seed=0):
    """Ground truths (random crops of scikit-image's photos) and noisy blended 'reconstructions'."""
    from skimage import data, transform

    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    gt = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = base[i % len(base)]
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        gt[i] = (transform.resize(img[y : y + s, x : x + s], (size, size)) * 255).astype(np.uint8)
    other = gt[rng.permutation(n)].astype(np.float32)
    recon = 0.7 * gt + 0.3 * other + rng.normal(0, 20, gt.shape)
    return np.clip(recon, 0, 255).astype(np.uint8), gt


def build_networks(clip, device):
    """{metric: FeatureNetwork} for the protocol's feature metrics, random weights."""
    from braindecode_suite.evaluation import protocols
    from braindecode_suite.evaluation.networks import load_network
    from braindecode_suite.utils.tiny import TINY_OPEN_CLIP_CONFIG

    proto = protocols.PROTOCOLS[PROTOCOL]
    metrics = [m for m in proto.metrics if m not in LOW]
    built = [m for m in metrics if not (m == "CLIP" and clip == "tiny")]
    nets = protocols.protocol_networks(proto, metrics=built, weights=None, device=device)
    if clip == "tiny":
        size = TINY_OPEN_CLIP_CONFIG["vision_cfg"]["image_size"]
        prep = dataclasses.replace(proto.network_for("CLIP").preprocess, size=size)
        kw = {"weights": None, "model_name": "tiny", "device": device}
        nets["CLIP"] = load_network("clip_vit_l14", "output", preprocess=prep, **kw)
    return {m: nets[m] for m in metrics}, proto


@contextlib.contextmanager
def extract_timers(nets):
    """Accumulate wall time per network inside FeatureNetwork.extract (batched mode)."""
    totals = defaultdict(float)
    unique = {id(net): net for net in nets.values()}.values()
    for net in unique:
        original = net.extract

        def timed(images, _orig=original, _name=net.name):
            _sync()
            t0 = time.perf_counter()
            out = _orig(images)
            _sync()
            totals[_name] += time.perf_counter() - t0
            return out

        net.extract = timed  # instance attribute shadows the method
    try:
        yield totals
    finally:
        for net in unique:
            del net.extract


def batched_mode(nets, device, batch_size, n_boot):
    from braindecode_suite.evaluation import evaluate_protocol

    kw = {"protocol": PROTOCOL, "metrics": list(nets), "networks": nets, "device": device}

    def run(recon, gt):
        for net in nets.values():
            net.batch_size = batch_size
        with extract_timers(nets) as totals:
            res = evaluate_protocol(recon, gt, batch_size=batch_size, n_boot=n_boot, **kw)
        return {m: res[m]["mean"] for m in nets}, dict(totals)

    return run


def loop_mode(nets, proto):
    """The research scripts' way: one image at a time through each network, then score."""
    import torch
    import torchvision.transforms as T
    from scipy.spatial.distance import correlation
    from torchvision.models.feature_extraction import create_feature_extractor

    pre = T.Resize((proto.pre_resize, proto.pre_resize), antialias=False)
    models = {}  # network name -> (transform, forward returning {layer: tensor}, device)
    for net in nets.values():
        if net.name in models:
            continue
        p = net.preprocess
        prep = T.Compose([T.Resize((p.size, p.size), antialias=False), T.Normalize(p.mean, p.std)])
        if net.name == "clip_vit_l14":
            fwd = lambda x, v=net.model: {"output": v(x)}  # noqa: E731 - encode_image
        else:
            fwd = create_feature_extractor(net.model, return_nodes=list(net.layers))
        models[net.name] = (prep, fwd, net.device)

    def features(images, totals):
        out = defaultdict(list)
        with torch.no_grad():
            for img in images:
                x = pre(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0)
                for name, (prep, fwd, dev) in models.items():
                    t0 = time.perf_counter()
                    for layer, v in fwd(prep(x.to(dev))).items():
                        out[name, layer].append(v.flatten(1).float().cpu().numpy())
                    _sync()
                    totals[name] += time.perf_counter() - t0
        return {k: np.concatenate(v) for k, v in out.items()}

    def run(recon, gt):
        totals = defaultdict(float)
        f_gt, f_rec = features(gt, totals), features(recon, totals)
        values = {}
        n = len(gt)
        for m, net in nets.items():
            spec = proto.network_for(m)
            real, pred = f_gt[net.name, spec.layer], f_rec[net.name, spec.layer]
            if spec.score == "two_way":  # MindEye's two_way_identification
                r = np.corrcoef(real, pred)[:n, n:]
                values[m] = float(np.mean(np.sum(r < np.diag(r), axis=0) / (n - 1)))
            else:  # float64: random networks give ~1e-14 features, which underflow in float32
                real, pred = real.astype(np.float64), pred.astype(np.float64)
                values[m] = float(
                    np.mean([correlation(a, b) for a, b in zip(real, pred, strict=True)])
                )
        return values, dict(totals)

    return run


def low_level_modes(device):
    import torch
    import torchvision.transforms as T
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    from braindecode_suite.evaluation import evaluate_protocol

    def batched(recon, gt):
        res = evaluate_protocol(
            recon, gt, protocol=PROTOCOL, metrics=list(LOW), device=device, chance=False
        )
        return {m: res[m]["mean"] for m in LOW}, {}

    prep = T.Compose([T.Resize((256, 256), antialias=False), T.Resize(425, antialias=False)])

    def loop(recon, gt):
        pix, ssim = [], []
        for r, g in zip(recon, gt, strict=True):
            r, g = (prep(torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255) for a in (r, g))
            pix.append(np.corrcoef(r.flatten().numpy(), g.flatten().numpy())[0, 1])
            r, g = (rgb2gray(a[0].permute(1, 2, 0).numpy()) for a in (r, g))
            ssim.append(structural_similarity(r, g, **SSIM_KW))
        return {"PixCorr": float(np.mean(pix)), "SSIM": float(np.mean(ssim))}, {}

    return loop, batched


def _load():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _sync():
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def bench_interleaved(modes, recon, gt, repeats, warmup):
    """Warm up each mode on `warmup` pairs, then time all modes in turn, `repeats` rounds.

    Returns, per mode, (median s, min s, max s, {network: median s}, metric values).
    """
    for fn in modes.values():
        fn(recon[:warmup], gt[:warmup])
    runs = defaultdict(list)
    for _ in range(repeats):
        for name, fn in modes.items():
            _sync()
            t0 = time.perf_counter()
            values, per_net = fn(recon, gt)
            _sync()
            runs[name].append((time.perf_counter() - t0, per_net, values))
    out = {}
    for name, rs in runs.items():
        times = [t for t, _, _ in rs]
        per_net = {k: statistics.median(p[k] for _, p, _ in rs) for k in rs[0][1]}
        out[name] = (statistics.median(times), min(times), max(times), per_net, rs[-1][2])
    return out


def print_table(title, results, n, columns):
    print(title)
    head = f"{'mode':<18}" + "".join(f"{LABELS[c]:>9}" for c in columns)
    head += f"{'all':>9}{'vs loop':>9}{'s/run':>8}{'(min-max s)':>16}"
    print(head)
    print("-" * len(head))
    t_loop = results["loop, 1 image"][0]
    for name, (t, lo, hi, per_net, _) in results.items():
        cells = "".join(f"{n / per_net[c]:>9.2f}" if c in per_net else f"{'':>9}" for c in columns)
        print(
            f"{name:<18}{cells}{n / t:>9.2f}{t_loop / t:>8.2f}x{t:>8.2f}"
            f"{f'({lo:.2f}-{hi:.2f})':>16}"
        )


def print_agreement(results):
    ref = results["loop, 1 image"][4]
    print(f"{'metric':<9}{'loop value':>12}" + "".join(f"{n:>18}" for n in list(results)[1:]))
    for m, v in ref.items():
        diffs = "".join(f"{abs(r[4][m] - v):>18.2e}" for r in list(results.values())[1:])
        print(f"{m:<9}{v:>12.5f}{diffs}")
    worst = max(abs(r[4][m] - ref[m]) for r in results.values() for m in ref)
    print(f"max |loop - batched| over all metrics and batch sizes: {worst:.2e}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="image pairs (256 px)")
    ap.add_argument(
        "--batch-sizes", default="8,32,64", help="comma-separated batch sizes of the batched mode"
    )
    ap.add_argument("--clip", choices=["tiny", "vit-l14"], default="tiny")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported")
    ap.add_argument("--warmup", type=int, default=8, help="pairs in the untimed warm-up run")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per metric")
    ap.add_argument("--skip-low-level", action="store_true", help="no PixCorr / SSIM timing")
    ap.add_argument("--low-level-only", action="store_true", help="only the PixCorr / SSIM timing")
    args = ap.parse_args()

    t_start = time.perf_counter()
    import torch

    from braindecode_suite.utils.devices import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.set_num_threads(torch.get_num_threads())  # explicit either way
    device = resolve_device(args.device)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, os.cpu_count() "
        f"{os.cpu_count()}, device {device}; {_load()} at start"
    )
    recon, gt = make_pairs(args.n)
    warmup = max(2, min(args.warmup, args.n))
    if not args.low_level_only:
        run_feature_metrics(args, device, recon, gt, warmup)
    if not args.skip_low_level:
        loop, batched = low_level_modes(str(device))
        low = bench_interleaved(
            {"loop, 1 image": loop, "batched": batched}, recon, gt, args.repeats, warmup
        )
        print_table(
            f"== PixCorr + SSIM (425 px, numpy / scikit-image): {args.n} pairs", low, args.n, []
        )
        print()
        print_agreement(low)
    print(f"total script time {time.perf_counter() - t_start:.1f} s; {_load()} at end")


def run_feature_metrics(args, device, recon, gt, warmup):
    t0 = time.perf_counter()
    nets, proto = build_networks(args.clip, str(device))
    n_nets = len({id(net) for net in nets.values()})
    print(f"built {n_nets} random networks in {time.perf_counter() - t0:.1f} s")

    modes = {"loop, 1 image": loop_mode(nets, proto)}
    for bs in dict.fromkeys(int(b) for b in args.batch_sizes.split(",")):
        modes[f"batched, batch {bs}"] = batched_mode(nets, str(device), bs, args.n_boot)
    results = bench_interleaved(modes, recon, gt, args.repeats, warmup)
    columns = list(dict.fromkeys(net.name for net in nets.values()))
    clip = "tiny ViT 32 px" if args.clip == "tiny" else "ViT-L/14 224 px"
    title = (
        f"\n== {PROTOCOL} feature metrics {list(nets)}: {args.n} pairs of 256 px images, "
        f"random weights, CLIP = {clip}; image pairs/s (2 images each) per network and overall"
    )
    print_table(title, results, args.n, columns)
    print("  (network columns: time inside that network's preprocessing + forward passes;")
    print("   'all' adds the 256 px pre-resize, correlation matrices, scores and bootstrap)\n")
    print_agreement(results)


if __name__ == "__main__":
    main()
