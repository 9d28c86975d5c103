"""Peak memory of the process while a stage runs (sampled RSS, plus CUDA peak)."""

from __future__ import annotations

import threading

import psutil


class PeakMemory:
    """Context manager sampling this process's resident memory every ``interval`` s."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _sample(self) -> None:
        try:
            rss = self._proc.memory_info().rss
        except psutil.Error:  # pragma: no cover
            return
        self.peak_bytes = max(self.peak_bytes, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
        except Exception:  # pragma: no cover - torch is a hard dependency
            pass
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)

    @staticmethod
    def cuda_peak_mb() -> float | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
