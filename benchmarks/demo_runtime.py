"""Time the embedded demo: a first run (empty cache) against a re-run (all stages cached).

    python benchmarks/demo_runtime.py [--keep DIR]

Both runs are the real `bds demo` command in a subprocess, so the times are what a user sees,
interpreter start-up and imports included. The feature cache is a fresh temporary folder, so
the first run computes every feature.
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


def _bds(args, env):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "braindecode_suite.cli", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bds {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", type=Path, default=None, help="keep the run and cache here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bds-bench-"))
    env = {**os.environ, "BDS_CACHE_DIR": str(base / "cache")}
    out = base / "runs"
    first = _bds(["demo", "--out", str(out)], env)
    second = _bds(["demo", "--out", str(out)], env)
    stages = []
    for d in sorted((out / "demo").iterdir()):
        m = d / "manifest.json"
        if m.is_file():
            stages.append(json.loads(m.read_text()))
    stages.sort(key=lambda m: m["order"])
    print(f"{'stage':<14}{'kind':<18}{'wall (s)':>10}{'peak RSS (MB)':>15}")
    for m in stages:
        print(
            f"{m['stage']:<14}{m['kind']:<18}{m['wall_time_s']:>10.1f}{m['peak_memory_mb']:>15.0f}"
        )
    print()
    print(f"{'run':<30}{'wall (s)':>10}")
    print(f"{'first bds demo (empty cache)':<30}{first:>10.1f}")
    print(f"{'second bds demo (cached)':<30}{second:>10.1f}")
    print(f"cached / first = {second / first:.3f}  (first is {first / second:.1f}x slower)")
    metrics = json.loads((out / "demo" / "metrics.json").read_text())
    print()
    for k, v in metrics.items():
        if isinstance(v, dict) and "mean" in v:
            print(f"{k:<34} {v['mean']:.3f}  chance {v.get('chance', float('nan')):.3f}")


if __name__ == "__main__":
    main()
