"""scheduler_api: keeps a Formula 1 data store fresh on a race-calendar-aware schedule.

``scheduler_api.__version__`` is the installed distribution's version
(package metadata); in a checkout that was never installed, the version in
``setup.cfg`` beside the package. It is looked up on first use, so importing
the package costs nothing extra.
"""

from __future__ import annotations

import configparser
import functools
import pathlib
from typing import Any

UNKNOWN_VERSION = "0+unknown"


@functools.lru_cache(maxsize=1)
def _version() -> str:
    from importlib import metadata  # noqa: PLC0415 - only when the version is asked for

    try:
        return metadata.version("scheduler_api")
    except metadata.PackageNotFoundError:
        pass
    parser = configparser.ConfigParser()
    try:
        parser.read(pathlib.Path(__file__).resolve().parent.parent / "setup.cfg", encoding="utf-8")
        return parser.get("metadata", "version", fallback=UNKNOWN_VERSION)
    except (OSError, configparser.Error):
        return UNKNOWN_VERSION


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
