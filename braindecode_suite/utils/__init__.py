"""Shared helpers: validation, logging, atomic I/O, devices and batching."""

from .io import (
    atomic_dir,
    atomic_path,
    fingerprint_file,
    fingerprint_path,
    hash_json,
    write_json_atomic,
)
from .logging import logger, set_log_level
from .validation import (
    BadInputError,
    check_array,
    check_option,
    check_path,
    check_positive_int,
    check_type,
)

__all__ = [
    "BadInputError",
    "atomic_dir",
    "atomic_path",
    "check_array",
    "check_option",
    "check_path",
    "check_positive_int",
    "check_type",
    "fingerprint_file",
    "fingerprint_path",
    "hash_json",
    "logger",
    "set_log_level",
    "write_json_atomic",
]
