"""How l2o writes files: atomic replacement, permissions that follow the umask, strict JSON.

Every file l2o writes goes to a temporary name beside its destination (``.NAME.XXXXXXXX.tmp``)
and is renamed into place, so a crash or a full disk never leaves a half-written file and never
destroys the previous version. Temporary files left by a killed process are removed by
:func:`remove_temporary_files` when the run directory is next taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from l2o.errors import L2OError

TEMPORARY_SUFFIX = ".tmp"


def _write_error(path: Path, error: OSError) -> L2OError:
    reason = error.strerror or type(error).__name__
    return L2OError(f"cannot write {path}: {reason}; free some space or choose a writable location")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; when the block ends without an exception, the
    file written there replaces ``path`` atomically (else it is removed).

    The temporary file is created empty with mode ``0o666`` less the umask, as ``open`` would
    create ``path`` itself. Any ``OSError`` (no space, read-only file system, a file where a
    folder should be) becomes a one-line :class:`L2OError` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise _write_error(path, error) from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise _write_error(path, error) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Writes ``data`` (``str`` as UTF-8) to ``path`` through :func:`atomic_path`, flushed to disk."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """Strict JSON of ``value``: ``NaN`` and infinities (not valid JSON) are written as ``null``."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, value: Any, indent: int | None = 2) -> None:
    """Writes ``value`` as strict JSON (:func:`json_text`) to ``path`` atomically."""
    atomic_write(path, json_text(value, indent) + "\n")


def append_line(path: str | os.PathLike, text: str) -> None:
    """Appends one line to ``path`` (a log such as ``metrics.jsonl``), as one-line error on failure."""
    try:
        with open(path, "a") as f:
            f.write(text + "\n")
    except OSError as error:
        raise _write_error(Path(path), error) from None


def check_writable_directory(path: str | os.PathLike) -> None:
    """Raises a one-line :class:`L2OError` unless ``path`` is, or can be made, a writable folder.

    Meant to run before expensive work whose results go there. Nothing is left behind: folders
    created for the check are removed again.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise L2OError(f"{path} is a file, not a folder; choose a folder for the results")
    created = [folder for folder in (path, *path.parents) if not folder.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise L2OError(f"cannot write into {path}: {error.strerror or error}; choose a writable folder") from None
    finally:
        for folder in created:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()


LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive_directory(path: str | os.PathLike, option: str) -> Iterator[Path]:
    """Holds an exclusive ``flock`` on ``path/.lock`` for the block, so that one process at a
    time writes the folder ``path`` (created when missing); another process holding it is a
    one-line :class:`L2OError` that names it and the command-line ``option`` that chooses the folder.

    The kernel releases the lock when the process ends, however it ends, so a killed process
    never leaves it stuck. On entry, temporary files a killed writer left behind are removed.
    """
    path = Path(path)
    check_writable_directory(path)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise L2OError(f"{path} is in use by another l2o process ({holder}); wait for it to end "
                           f"or choose another {option}") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        remove_temporary_files(path)
        try:
            yield path
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def remove_temporary_files(directory: str | os.PathLike) -> list[Path]:
    """Removes what :func:`atomic_path` leaves behind when its process is killed; returns them.

    Only call this on a directory no other process is writing (a run directory one owns).
    """
    leftovers = [path for path in Path(directory).rglob(f".*{TEMPORARY_SUFFIX}") if path.is_file()]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def fingerprint(value: Any, length: int = 16) -> str:
    """A short hash of a JSON-able ``value``, independent of key order (names of cache entries
    and of old checkpoints' configurations)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def read_arrays(path: Path | None) -> dict | None:
    """The arrays stored at ``path`` (an ``.npz`` file), or ``None`` when there is none or it is
    damaged (then it is computed again)."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError):
        return None


def write_arrays(path: Path | None, **arrays) -> None:
    """Stores ``arrays`` at ``path`` (compressed ``.npz``, written atomically); nothing without a path."""
    if path is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write(path, buffer.getvalue())
