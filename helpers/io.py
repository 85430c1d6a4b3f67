"""Atomic writes, config hashes and cache loading (caches are rebuilt when they are corrupt)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _jsonable(value: Any) -> Any:
    """Turn tuples, paths, numpy and torch scalars into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def config_hash(config: dict[str, Any], length: int = 12) -> str:
    """A short, stable hash of a config dict (key order does not matter)."""
    text = json.dumps(_jsonable(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write to a temporary file beside ``path`` then ``os.replace`` it, so no reader sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return _atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON; numpy/torch values and non-finite floats are converted."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def atomic_copy(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so that no reader sees a half-copied file."""
    return _atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def atomic_torch_save(path: Path, obj: Any) -> Path:
    return _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_torch_cache(path: Path) -> Any | None:
    """Load a cache written by :func:`atomic_torch_save` (``weights_only=True``).

    Returns None when the file is missing; a corrupt file is reported, removed and None returned so the caller rebuilds.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unreadable file is rebuilt, whatever the reason
        warnings.warn(f"cache file {path} is unreadable ({type(error).__name__}: {error}); rebuilding it", stacklevel=2)
        path.unlink(missing_ok=True)
        return None
