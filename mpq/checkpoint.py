"""Atomic writes and safe reads.

A checkpoint, metrics file or figure is either the old file or the complete new one. Checkpoints are
data, never code: they hold tensors and plain values (dicts, lists, tuples, strings, numbers) and are
read with ``torch.load(..., weights_only=True)``, which refuses anything else, so a checkpoint file
from someone else cannot run code when it is loaded.
"""
from __future__ import annotations

import json
import os
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
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
    except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...: all mean "not ours"
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated, corrupt or not an mpq checkpoint ({reason}); "
                              f"delete it and {fix}") from None
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
