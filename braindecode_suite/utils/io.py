"""Atomic writes and content fingerprints.

Everything that lands in a cache or a run directory is written under a temporary
name in the same directory and renamed when complete, so a killed process never
leaves a file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_dir",
    "write_json_atomic",
    "fingerprint_file",
    "fingerprint_path",
    "hash_json",
    "TMP_MARKER",
]

TMP_MARKER = ".tmp-"
#: Files above this size are fingerprinted from their size, head and tail only.
FULL_HASH_LIMIT = 64 * 2**20
_PART = 4 * 2**20


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory; on success it replaces ``path`` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = _tmp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return path


def hash_json(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def fingerprint_file(path: str | os.PathLike) -> str:
    """sha256 of a file's content.

    Files larger than 64 MiB are fingerprinted from their size plus the first and
    last 4 MiB, so that checking a 30 GB NSD beta file takes milliseconds; a
    truncated or rewritten file still changes the fingerprint.
    """
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        else:
            h.update(f"partial:{size}:".encode())
            h.update(f.read(_PART))
            f.seek(size - _PART)
            h.update(f.read(_PART))
    return h.hexdigest()


def fingerprint_path(path: str | os.PathLike) -> str:
    """Fingerprint a file, or a directory from its files' relative names and fingerprints."""
    path = Path(path)
    if path.is_file():
        return fingerprint_file(path)
    if not path.is_dir():
        raise FileNotFoundError(path)
    entries = {}
    for p in sorted(path.rglob("*")):
        if p.is_file() and TMP_MARKER not in p.name:
            entries[p.relative_to(path).as_posix()] = fingerprint_file(p)
    return hash_json(entries)
