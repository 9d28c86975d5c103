"""Ridge benchmark: braindecode_suite RidgeCV against scikit-learn and himalaya.

    python benchmarks/ridge.py                 # problem A (3,000 × 4,000 → 2,000 targets)
    python benchmarks/ridge.py --problem B     # NSD shape 8,859 × 15,724 → 197,376 targets
    python benchmarks/ridge.py --problem all

Every implementation runs in its own subprocess on the same generated data (fixed seed), so
times and peak memory (the subprocess's maximum resident set) are not polluted by the others.
Times are of ``fit`` (problem A) or of fit-and-predict streamed over target batches
(problem B). The floor is the FLOP count of the unavoidable kernels (X Xᵀ, the
eigendecomposition counted as 4n³, Uᵀ Y, and the weights/predictions) divided by this
machine's SGEMM rate, measured in the same run. "max |Δ pred|" is the largest difference of
test predictions against scikit-learn's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ALPHAS = np.logspace(-1, 5, 13) * 1e3  # 13 alphas around the scale of X Xᵀ


def make_a(seed=0, n=3000, p=4000, t=2000, n_test=500):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, p), dtype=np.float32)
    W = rng.standard_normal((p, t), dtype=np.float32) * (rng.random(t) > 0.3).astype(np.float32)
    Y = X @ W * np.float32(p**-0.5) + 2 * rng.standard_normal((n + n_test, t), dtype=np.float32)
    return X[:n], Y[:n], X[n:]


class LazyTargets:
    """NSD-sized targets generated block by block (never all in memory): low-rank + noise."""

    def __init__(self, n, t, seed=0, rank=32, chunk=4096):
        rng = np.random.default_rng(seed)
        self.Z = rng.standard_normal((n, rank), dtype=np.float32)
        self.shape = (n, t)
        self.seed, self.rank, self.chunk = seed, rank, chunk
        self.seconds = 0.0  # time spent generating, subtracted from the solve time
        self._cache = (None, None)

    def _chunk(self, c):
        if self._cache[0] == c:
            return self._cache[1]
        t0 = time.perf_counter()
        rng = np.random.default_rng((self.seed, c))
        width = min(self.chunk, self.shape[1] - c * self.chunk)
        B = rng.standard_normal((self.rank, width), dtype=np.float32)
        block = self.Z @ B + 3 * rng.standard_normal((self.shape[0], width), dtype=np.float32)
        self._cache = (c, block)
        self.seconds += time.perf_counter() - t0
        return block

    def __getitem__(self, key):
        rows, cols = key
        start, stop = cols.start, min(cols.stop, self.shape[1])
        parts = []
        for c in range(start // self.chunk, (stop - 1) // self.chunk + 1):
            block = self._chunk(c)
            lo = max(start - c * self.chunk, 0)
            hi = min(stop - c * self.chunk, block.shape[1])
            parts.append(block[:, lo:hi])
        return np.concatenate(parts, axis=1)[rows]


def make_b(seed=0, n=8859, p=15724, t=197376, n_test=982):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, p), dtype=np.float32)
    return X[:n], LazyTargets(n, t, seed), X[n:]


# --------------------------------------------------------------------------- workers
def worker(impl: str, problem: str, out: str) -> None:
    import resource

    X, Y, Xt = make_a() if problem == "A" else make_b()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    extra = {}
    if impl == "sklearn":
        from sklearn.linear_model import RidgeCV as Sk

        m = Sk(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
        secs = time.perf_counter() - t0
        pred = m.predict(Xt)
    elif impl.startswith("himalaya"):
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import KernelRidgeCV

        backend = set_backend(impl.split(":")[1], on_error="raise")
        m = KernelRidgeCV(alphas=ALPHAS, cv=5)
        m.fit(backend.asarray(X), backend.asarray(Y))
        secs = time.perf_counter() - t0
        pred = backend.to_numpy(m.predict(backend.asarray(Xt)))
    else:
        from braindecode_suite.models import RidgeCV

        _, backend, cv, device = impl.split(":")
        m = RidgeCV(ALPHAS, cv=int(cv) if cv.isdigit() else cv, backend=backend, device=device)
        if problem == "A":
            m.fit(X, Y)
            if backend == "torch":
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            pred = m.predict(Xt)
            extra["form"] = m.form_
        else:
            pred_path = Path(out).with_suffix(".pred.npy")
            sink = np.lib.format.open_memmap(pred_path, "w+", np.float32, (len(Xt), Y.shape[1]))
            _, best = m.fit_and_predict(X, Y, Xt, out=sink)
            secs = time.perf_counter() - t0 - Y.seconds
            extra["target_generation_s"] = round(Y.seconds, 1)
            sink.flush()
            pred = None
            extra["form"] = m.form_
            extra["alphas_chosen"] = np.bincount(
                np.searchsorted(ALPHAS, best * 0.999), minlength=len(ALPHAS)
            ).tolist()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if pred is not None:
        np.save(Path(out).with_suffix(".pred.npy"), np.asarray(pred, dtype=np.float32))
    Path(out).write_text(
        json.dumps({"seconds": secs, "peak_gib": peak, "data_gib": base_rss, **extra})
    )


def run_worker(impl, problem, tmp):
    out = Path(tmp) / f"{problem}-{impl.replace(':', '_')}.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", impl, "--problem", problem, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"  {impl}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    res = json.loads(out.read_text())
    pred_file = out.with_suffix(".pred.npy")
    res["pred_file"] = str(pred_file) if pred_file.exists() else None
    return res


def sgemm_rate(n=4096, repeats=3):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def floor_flops(n, p, t, n_test, *, weights=True):
    flops = 2 * n * n * p + 4 * n**3 + 2 * n * n * t  # K, eigh, C = Uᵀ Y
    if weights:  # dual weights Xᵀ (U (D ∘ C))
        flops += 2 * n * n * t + 2 * n * p * t
    else:  # predictions through P = X_t Xᵀ U
        flops += 2 * n_test * p * n + 2 * n_test * n * n + 2 * n_test * n * t
    return flops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--problem", choices=["A", "B", "all"], default="A")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument(
        "--b-cv",
        default="gcv",
        choices=["gcv", "loo"],
        help="criterion for problem B (exact LOO takes about 3x longer)",
    )
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.problem, args.out)

    import torch

    rate = sgemm_rate()
    print(
        f"SGEMM rate (numpy, 4096², float32): {rate / 1e9:.0f} GFLOP/s; "
        f"{os.cpu_count()} CPU(s); CUDA: {torch.cuda.is_available()}"
    )
    tmp = tempfile.mkdtemp(prefix="bds-ridge-")
    problems = ["A", "B"] if args.problem == "all" else [args.problem]
    for problem in problems:
        if problem == "A":
            n, p, t, n_test = 3000, 4000, 2000, 500
            impls = [
                "sklearn",
                "himalaya:torch",
                "himalaya:numpy",
                "ours:numpy:loo:cpu",
                "ours:numpy:gcv:cpu",
                "ours:torch:loo:cpu",
                "ours:numpy:5:cpu",
            ]
            if torch.cuda.is_available():
                impls += ["ours:torch:loo:cuda", "ours:torch:gcv:cuda"]
            floor = floor_flops(n, p, t, n_test) / rate
        else:
            n, p, t, n_test = 8859, 15724, 197376, 982
            impls = [f"ours:numpy:{args.b_cv}:cpu"]
            if torch.cuda.is_available():
                impls.append(f"ours:torch:{args.b_cv}:cuda")
            floor = floor_flops(n, p, t, n_test, weights=False) / rate
        print(
            f"\nproblem {problem}: {n} × {p} → {t} targets, {len(ALPHAS)} alphas per target, "
            f"{n_test} test samples; floor {floor:.2f} s"
        )
        results = {impl: run_worker(impl, problem, tmp) for impl in impls}
        ref = results.get("sklearn")
        ref_pred = np.load(ref["pred_file"]) if ref and ref.get("pred_file") else None
        head = (
            f"{'implementation':<24}{'time (s)':>10}{'vs sklearn':>12}{'vs floor':>10}"
            f"{'GFLOP/s':>9}{'peak RSS (GiB)':>16}{'max |Δ pred|':>14}"
        )
        print(head)
        print("-" * len(head))
        for impl, res in results.items():
            if res is None:
                print(f"{impl:<24}{'failed':>10}")
                continue
            diff = ""
            if ref_pred is not None and res.get("pred_file"):
                diff = f"{np.abs(np.load(res['pred_file']) - ref_pred).max():.2e}"
            speed = f"{ref['seconds'] / res['seconds']:.1f}x" if ref else ""
            gflops = floor * rate / res["seconds"] / 1e9
            print(
                f"{impl:<24}{res['seconds']:>10.2f}{speed:>12}{res['seconds'] / floor:>9.1f}x"
                f"{gflops:>9.0f}{res['peak_gib']:>16.2f}{diff:>14}"
            )
            if "target_generation_s" in res:
                print(
                    f"{'':<24}(+{res['target_generation_s']} s generating the targets, not counted)"
                )
            if "alphas_chosen" in res:
                print(f"{'':<24}alphas chosen (count per grid value): {res['alphas_chosen']}")
        print(
            "GFLOP/s = floor FLOPs / time. himalaya runs 5-fold CV (its KernelRidgeCV); "
            "ours:…:5 is our 5-fold."
        )


if __name__ == "__main__":
    main()
