"""Deep decoder benchmark: training and inference throughput, peak memory.

    python benchmarks/decoders.py                       # small size, CPU (and CUDA if present)
    python benchmarks/decoders.py --size default        # the 24-GB-GPU defaults (slow on CPU)
    python benchmarks/decoders.py --size small default --device cuda --threads 8

For each decoder (MindEye2-, Brain-IT-, MindBridge-style) and size, a fresh subprocess builds
the model for one subject, times ``--train-steps`` optimiser steps (forward, loss, backward,
AdamW) at ``--batch`` samples and inference at batch 1, 32 and 256, and reports the
subprocess's peak resident memory (CPU) or ``torch.cuda.max_memory_allocated`` (CUDA).
"default" is each config's default (sized for one 24 GB GPU) with 15,724 voxels (NSD
subject 1's nsdgeneral); "small" is a reduced setting for laptops and CI.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

N_VOX_DEFAULT = 15724

SMALL = {
    "mindeye2": dict(
        hidden_dim=256, n_blocks=2, n_tokens=16, clip_dim=64, lowlevel_shape=(4, 8, 8)
    ),
    "brainit": dict(
        emb_dim=16,
        n_clusters=32,
        d_model=64,
        n_heads=4,
        n_layers=2,
        n_query_layers=1,
        n_patches=16,
        feat_dim=64,
        kmeans_n_init=1,
    ),
    "mindbridge": dict(pool_size=1024, hidden_dim=256, n_blocks=2, n_tokens=16, clip_dim=64),
}
N_VOX_SMALL = 2000


def build(family: str, size: str):
    import torch

    from braindecode_suite.models import deep

    n_vox = N_VOX_DEFAULT if size == "default" else N_VOX_SMALL
    kw = {} if size == "default" else SMALL[family]
    cls, cfg = {
        "mindeye2": (deep.MindEye2Decoder, deep.MindEye2Config),
        "brainit": (deep.BrainITDecoder, deep.BrainITConfig),
        "mindbridge": (deep.MindBridgeDecoder, deep.MindBridgeConfig),
    }[family]
    torch.manual_seed(0)
    return cls(cfg(n_voxels={1: n_vox}, **kw)), n_vox


def one(family: str, size: str, device: str, batch: int, train_steps: int, threads: int):
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    model, n_vox = build(family, size)
    n_params = sum(p.numel() for p in model.parameters())
    dev = torch.device(device)
    model.to(dev)
    shapes = model.target_shapes()
    rng = np.random.default_rng(0)
    if family == "brainit":  # clusters from random embeddings (no data needed to time it)
        model.fit_clusters()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    x = torch.as_tensor(rng.standard_normal((batch, n_vox)), dtype=torch.float32, device=dev)
    y = {k: torch.randn((batch, *s), device=dev) for k, s in shapes.items()}
    model.train()
    times = []
    for i in range(train_steps + 1):  # the first step is warm-up
        sync()
        t0 = time.perf_counter()
        out = model({"subject": 1, "voxels": x}, y, {}, 1.0)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    train_sps = batch / float(np.median(times))
    model.eval()
    infer = {}
    with torch.no_grad():
        for b in (1, 32, 256):
            xb = torch.as_tensor(rng.standard_normal((b, n_vox)), dtype=torch.float32, device=dev)
            model({"subject": 1, "voxels": xb})
            reps, ts = max(2, 64 // b), []
            for _ in range(reps):
                sync()
                t0 = time.perf_counter()
                model({"subject": 1, "voxels": xb})
                sync()
                ts.append(time.perf_counter() - t0)
            infer[b] = b / float(np.median(ts))
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
        peak_kind = "GPU"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        peak_kind = "RSS"
    return dict(
        family=family,
        size=size,
        device=device,
        params_M=n_params / 1e6,
        train_sps=train_sps,
        infer_sps=infer,
        peak_GiB=peak,
        peak_kind=peak_kind,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", nargs="+", default=["small"], choices=["small", "default"])
    ap.add_argument("--family", nargs="+", default=["mindeye2", "brainit", "mindbridge"])
    ap.add_argument(
        "--device",
        nargs="+",
        default=None,
        help="cpu and/or cuda (default: cpu, plus cuda when available)",
    )
    ap.add_argument("--batch", type=int, default=32, help="training batch size")
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(*a.one[:3], a.batch, a.train_steps, a.threads)))
        return
    if a.device is None:
        import torch

        a.device = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in a.device:
        for size in a.size:
            for fam in a.family:
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    fam,
                    size,
                    device,
                    "--batch",
                    str(a.batch),
                    "--train-steps",
                    str(a.train_steps),
                    "--threads",
                    str(a.threads),
                ]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    print(f"{fam}/{size}/{device} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    head = (
        f"{'decoder':<11}{'size':<9}{'device':<7}{'params (M)':>11}{'train/s':>10}"
        f"{'infer/s b1':>12}{'b32':>10}{'b256':>10}{'peak GiB':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        i = {int(k): v for k, v in r["infer_sps"].items()}
        print(
            f"{r['family']:<11}{r['size']:<9}{r['device']:<7}{r['params_M']:>11.2f}"
            f"{r['train_sps']:>10.1f}{i[1]:>12.1f}{i[32]:>10.1f}{i[256]:>10.1f}"
            f"{r['peak_GiB']:>8.2f} {r['peak_kind']}"
        )
    print(
        f"(training batch {a.batch}, {a.train_steps} timed steps, median; "
        f"torch threads {a.threads})"
    )


if __name__ == "__main__":
    main()
