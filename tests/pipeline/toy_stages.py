"""Tiny stages for runner tests: they count their executions in a side file."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from braindecode_suite.pipeline import Stage, StageConfig, register_stage
from braindecode_suite.pipeline.base import STAGES


def _count(ctx, name):
    log = Path(os.environ["TOY_LOG"])
    with open(log, "a") as f:
        f.write(name + "\n")


def executions(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


if "toy_make" not in STAGES:

    @register_stage
    class ToyMake(Stage):
        kind = "toy_make"
        writes = ("numbers",)

        class Config(StageConfig):
            n: int = Field(5, ge=1)
            sleep: float = 0.0
            fail: bool = False

        def run(self, ctx):
            _count(ctx, self.name)
            path = ctx.output("numbers", "numbers.npy")
            np.save(path, np.arange(self.config.n))
            if self.config.sleep:
                print("TOY_STARTED", flush=True)
                time.sleep(self.config.sleep)
            if self.config.fail:
                raise RuntimeError("toy failure after writing")

    @register_stage
    class ToySum(Stage):
        kind = "toy_sum"
        reads = ("numbers",)
        writes = ("total",)
        publish = ("total",)

        class Config(StageConfig):
            scale: float = 1.0

        def run(self, ctx):
            _count(ctx, self.name)
            total = float(np.load(ctx.input("numbers")).sum()) * self.config.scale
            ctx.output("total", "total.json").write_text(json.dumps({"total": total}))


if "toy_gather" not in STAGES:

    @register_stage
    class ToyGather(Stage):
        kind = "toy_gather"
        gathers = ("total",)
        writes = ("all_totals",)

        class Config(StageConfig):
            pass

        def run(self, ctx):
            _count(ctx, self.name)
            totals = {
                name: json.loads(Path(p).read_text())["total"]
                for name, p in ctx.gathered("total").items()
            }
            ctx.output("all_totals", "all.json").write_text(json.dumps(totals))
