"""Atomic, pickle-free file input/output for arrays (.npz) and records (.json)."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["save_npz", "load_npz", "save_json", "load_json", "atomic_path", "log_to", "share_compilation_cache"]


class atomic_path:
    """Context manager yielding a temporary path beside ``path``, renamed onto it on success.

    An interrupted or failing writer leaves no file that looks complete: the temporary file is
    removed on error and ``path`` only appears through an atomic ``os.replace``.
    """

    def __init__(self, path: str | os.PathLike, suffix: str = ""):
        self.path = Path(path)
        self.suffix = suffix or self.path.suffix

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=f".tmp{self.suffix}", dir=self.path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def save_npz(path: str | os.PathLike, **arrays) -> None:
    """Writes ``arrays`` to ``path`` as an uncompressed .npz, atomically.

    Raises:
        TypeError: for an array that would need pickling (object dtype), naming it.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype.hasobject:
            raise TypeError(f"array {key!r} has object dtype and would be pickled; store numbers or strings")
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: str | os.PathLike, required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Returns the arrays stored in ``path``; never unpickles.

    Raises:
        ValueError: naming the file when it is missing, unreadable, or lacks a ``required`` array.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    for key in required:
        if key not in arrays:
            raise ValueError(f"{path}: missing array '{key}' (found {sorted(arrays)})")
    return arrays


def save_json(path: str | os.PathLike, obj: Mapping | list) -> None:
    """Writes ``obj`` as indented JSON, atomically; NaN is written as ``NaN``."""
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def load_json(path: str | os.PathLike):
    """Returns the JSON object in ``path``; raises ValueError naming the file if it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def log_to(path: str | os.PathLike, name: str) -> logging.Logger:
    """Sends everything this process prints to the file ``path`` and returns a logger ``name`` writing there.

    For a workflow job: Python's ``sys.stdout``/``sys.stderr`` and the file descriptors 1 and 2 (so the
    messages of XLA and other C/C++ libraries too) are pointed at ``path``, line-buffered, and
    ``logging`` writes timestamped lines to it at level INFO.
    """
    stream = open(path, "w", buffering=1)  # noqa: SIM115  kept open for the life of the process
    os.dup2(stream.fileno(), 1)
    os.dup2(stream.fileno(), 2)
    sys.stdout = sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    return logging.getLogger(name)


def share_compilation_cache(directory: str | os.PathLike = ".snakemake/jax-cache") -> None:
    """Lets the jobs of a workflow reuse each other's compiled XLA programs through JAX's persistent cache.

    Jobs of one stage compile the same programs (same shapes for every potential). The cache lives in
    ``directory/<host name>``, since compiled code is specific to a CPU. Call it before JAX compiles
    anything; settings already in the environment (``JAX_COMPILATION_CACHE_DIR``, ...) win.
    """
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(directory, platform.node()).resolve()))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
