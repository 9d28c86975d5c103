"""Test-wide fixtures: no network, a private cache and data folder for every test."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Refuse every connection that is not to the loopback interface."""
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1")):
            return real_connect(self, address)
        if self.family == socket.AF_UNIX:
            return real_connect(self, address)
        raise RuntimeError(f"Tests must not reach the network (tried to connect to {address!r}).")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once at import: set its constant too, so a
    # missing-weights path fails at once instead of retrying the blocked network
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path_factory, monkeypatch):
    """Point the feature cache and data root at temporary folders."""
    base = tmp_path_factory.mktemp("bds_home")
    monkeypatch.setenv("BDS_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("BDS_DATA_DIR", str(base / "data"))
    return base


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny models (use with ``usefixtures``).

    Tiny models gain nothing from more threads, and on a busy 2-core machine the extra
    OpenMP threads spin: one thread is several times faster there.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared_data():
    """The real recordings in ../shared/data (skipped when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA}")
    return SHARED_DATA
