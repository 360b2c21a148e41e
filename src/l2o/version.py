"""The installed l2o's version, for ``l2o --version`` and for keys of cached results."""

from __future__ import annotations


def installed_version() -> str:
    """The version pip installed, or ``(not installed)`` when running from a source tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("l2o")
    except PackageNotFoundError:
        return "(not installed)"
