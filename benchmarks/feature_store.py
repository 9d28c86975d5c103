"""Benchmark the HDF5 FeatureStore against plain ``np.save`` / ``np.load``.

Times batched writes (256 rows a batch, lzf), a full read, and a read of 10 % of the
rows by random id, and prints one table plus the sizes on disk. Data are ReLU'd
Gaussian values, like network activations (about half zeros).

    python benchmarks/feature_store.py --rows 20000 --row-shape 64,64 --dtype float32
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from braindecode_suite.features.store import FeatureStore


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--row-shape", default="64,64", help="comma-separated row shape")
    parser.add_argument("--dtype", default="float32", choices=["float16", "float32"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--compression", default="lzf", choices=["lzf", "gzip", "none"])
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    row_shape = tuple(int(s) for s in args.row_shape.split(","))
    compression = None if args.compression == "none" else args.compression

    rng = np.random.default_rng(0)
    X = np.maximum(rng.standard_normal((args.rows, *row_shape), dtype=np.float32), 0)
    X = X.astype(args.dtype)
    ids = rng.permutation(args.rows * 2)[: args.rows].astype(np.int64)
    pick = rng.choice(args.rows, size=max(1, args.rows // 10), replace=False)
    mb = X.nbytes / 2**20
    mb_pick = X[pick].nbytes / 2**20

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        h5 = Path(tmp) / "feats.h5"
        npy = Path(tmp) / "feats.npy"

        def write_store():
            with FeatureStore.open_writer(
                h5, ids, {"x": (row_shape, args.dtype)}, compression=compression
            ) as w:
                for s in range(0, args.rows, args.batch):
                    w.append(ids[s : s + args.batch], {"x": X[s : s + args.batch]})

        rows = []
        t_store, _ = _timed(write_store)
        t_np, _ = _timed(lambda: np.save(npy, X))
        rows.append(
            ("write", f"FeatureStore (append {args.batch}, {compression})", mb, t_store, t_np)
        )
        rows.append(("write", "np.save", mb, t_np, t_np))

        store = FeatureStore(h5)
        t_store, got = _timed(lambda: store.read("x"))
        assert np.array_equal(got, X)
        t_np, _ = _timed(lambda: np.load(npy))
        rows.append(("full read", "FeatureStore.read", mb, t_store, t_np))
        rows.append(("full read", "np.load", mb, t_np, t_np))

        t_store, got = _timed(lambda: store.read("x", ids[pick]))
        assert np.array_equal(got, X[pick])
        t_np, _ = _timed(lambda: np.load(npy)[pick])
        t_mm, _ = _timed(lambda: np.asarray(np.load(npy, mmap_mode="r")[pick]))
        t_blocks, n = _timed(lambda: sum(len(b) for _, b in store.iter_blocks("x", ids[pick])))
        rows.append(("10% random ids", "FeatureStore.read", mb_pick, t_store, t_np))
        rows.append(("10% random ids", "FeatureStore.iter_blocks", mb_pick, t_blocks, t_np))
        rows.append(("10% random ids", "np.load + fancy index", mb_pick, t_np, t_np))
        rows.append(("10% random ids", "np.load(mmap_mode='r')", mb_pick, t_mm, t_np))

        print(
            f"rows={args.rows} row_shape={row_shape} dtype={args.dtype} "
            f"compression={compression} batch={args.batch}; array {mb:.1f} MiB"
        )
        header = (
            f"{'operation':<16}{'method':<32}{'MiB':>9}{'seconds':>9}{'MiB/s':>9}{'vs numpy':>10}"
        )
        print(header)
        print("-" * len(header))
        for op, method, size, t, ref in rows:
            print(f"{op:<16}{method:<32}{size:>9.1f}{t:>9.3f}{size / t:>9.0f}{t / ref:>9.2f}x")
        s_h5, s_np = os.path.getsize(h5), os.path.getsize(npy)
        print(
            f"size on disk: store {s_h5 / 2**20:.1f} MiB, npy {s_np / 2**20:.1f} MiB "
            f"(ratio {s_h5 / s_np:.2f})"
        )


if __name__ == "__main__":
    main()
