"""Atomic writes and safe reads.

A checkpoint, metrics file or figure is either the old file or the complete new one. Checkpoints are
data, never code: they hold tensors and plain values (dicts, lists, tuples, strings, numbers) and are
read with ``torch.load(..., weights_only=True)``, which refuses anything else, so a checkpoint file
from someone else cannot run code when it is loaded.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` (same file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically; the same ``obj`` gives the same bytes (DVC skips what depends on an unchanged file).

    Saved through a file object: given a path, torch names the archive's records after the file, here a random
    temporary name, which made every re-run write new bytes.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not the one asked for; the message names the file and the fix."""


def load_checkpoint(path: str | Path, *, fix: str = "re-run the stage that writes it (`dvc repro`)") -> dict:
    """Read a checkpoint written by ``save_checkpoint``: tensors and plain values only (``weights_only``).

    A missing, truncated, corrupt or foreign file raises one ``CheckpointError`` naming the file and ``fix``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message suggests weights_only=False: exactly what must not be done with such a file
        if "GLOBAL" in str(exc) or "global" in str(exc):
            raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain values, so it "
                                  f"was not loaded (loading it could run code): not an mpq checkpoint; delete it "
                                  f"and {fix}") from None
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file; delete it and {fix}") from None
    except Exception as exc:  # RuntimeError (bad zip), EOFError, ...: truncated or not a torch file at all
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or not a torch file "
                              f"({type(exc).__name__}); delete it and {fix}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not an mpq checkpoint; "
                              f"delete it and {fix}")
    return state


def require_keys(state: dict, keys: tuple[str, ...], path: str | Path, fix: str) -> None:
    """Refuse a checkpoint that lacks entries (an older format, or another program's file)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: an older format or another program's file; "
                              f"delete it and {fix}")


def check_matches(path: str | Path, what: str, stored: Any, expected: Any, fix: str) -> None:
    """Refuse a checkpoint whose ``what`` (model, width, classes, ...) differs from the one asked for."""
    if stored != expected:
        raise CheckpointError(f"checkpoint {path} has {what} {stored!r}, but {expected!r} was asked for; {fix}")


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (format from the suffix of ``path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)
