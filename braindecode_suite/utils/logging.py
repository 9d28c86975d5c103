"""One package logger; library code logs, it never prints."""

from __future__ import annotations

import logging

__all__ = ["logger", "set_log_level", "verbose_level"]

logger = logging.getLogger("braindecode_suite")
logger.addHandler(logging.NullHandler())

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def verbose_level(verbose: bool | str | int | None) -> int:
    """Translate a ``verbose`` argument into a logging level."""
    if verbose is None:
        return logger.getEffectiveLevel()
    if isinstance(verbose, bool):
        return logging.INFO if verbose else logging.WARNING
    if isinstance(verbose, str):
        key = verbose.lower()
        if key not in _LEVELS:
            from .validation import check_option

            check_option("verbose", key, _LEVELS)
        return _LEVELS[key]
    return int(verbose)


def set_log_level(verbose: bool | str | int | None = "info") -> None:
    """Set the package log level (``'debug'``, ``'info'``, ``'warning'``, ...)."""
    logger.setLevel(verbose_level(verbose))


def progress_disabled() -> bool:
    """Progress bars are shown only when the package logs at INFO or below."""
    return logger.getEffectiveLevel() > logging.INFO
