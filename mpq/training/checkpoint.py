"""Files that outlive a run: atomic writes, safe reads, outputs checked before the work, and what a command
says when it stops early.

A checkpoint, metrics file or figure is either the old file or the complete new one. Checkpoints are
data, never code: they hold tensors and plain values (dicts, lists, tuples, strings, numbers) and are
read with ``torch.load(..., weights_only=True)``, which refuses anything else, so a checkpoint file
from someone else cannot run code when it is loaded.

Every command line checks its output locations (``check_output``) before the long work, so a mistake there
costs seconds, not a run, and an output can never replace one of the command's inputs. ``run_command`` gives
every command the same ending: a user's mistake is one line (exit status 2), Ctrl-C is one line naming the
last complete checkpoint and the command that resumes from it (exit status 130).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

from mpq.data.datasets import DataError

log = logging.getLogger(__name__)


# --- atomic writes: the user's umask, short temporary names, no temporary file outliving its run ------------

TEMP_STEM = 64        # a temporary name keeps at most this much of its target's name: it fits wherever the target does
_RANDOM = "[a-z0-9_]{8}"  # tempfile's random part


def current_umask() -> int:
    """The process's umask, read without changing it where the system says (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_pattern(path: Path, folder: bool) -> re.Pattern:
    """The temporary names that writes to ``path`` use, this version's (with the writer's pid) and earlier ones'."""
    name = path.name if folder else path.stem
    short, tail = re.escape(name[:TEMP_STEM]), (r"\.tmp" if folder else r"\.tmp" + re.escape(path.suffix[:16]))
    old_tail = r"\.tmp" if folder else r"\.tmp" + re.escape(path.suffix)
    kinds = f"(?:{_RANDOM}|old)" if folder else _RANDOM          # a folder's writes also park the old folder
    return re.compile(rf"^\.{short}\.(?P<pid>\d+)\.{kinds}{tail}$|^\.{re.escape(name)}\.{kinds}{old_tail}$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:          # another user's live process
        return True
    return True


def remove_stale_temporaries(path: str | Path, folder: bool = False) -> list[Path]:
    """Delete the temporary files (or staging folders) beside ``path`` that a killed earlier write to it left:
    those of a process that no longer runs, and those of earlier versions, which did not name their process.
    A write in progress in another live process keeps its file. Returns what was removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern, removed = _temp_pattern(path, folder), []
    for entry in path.parent.iterdir():
        match = pattern.match(entry.name)
        if match is None or (match["pid"] is not None and _alive(int(match["pid"]))):
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        except FileNotFoundError:
            continue
        removed.append(entry)
    if removed:
        log.info("removed %d temporary file(s) left by an earlier, interrupted write of %s", len(removed), path)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` (same file system).

    The file gets the mode a plain ``open`` would give it (``0o666`` less the umask; ``mkstemp`` makes it
    ``0o600``), and the temporary files of an earlier write to ``path`` that was killed are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:TEMP_STEM]}.{os.getpid()}.", suffix=f".tmp{path.suffix[:16]}",
                               dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; on success it replaces ``path`` (a folder) as a whole.

    The folder gets the mode ``mkdir`` would give it (``0o777`` less the umask; ``mkdtemp`` makes it ``0o700``),
    and the staging folders of an earlier write to ``path`` that was killed are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, folder=True)
    prefix = f".{path.name[:TEMP_STEM]}.{os.getpid()}."
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    try:
        yield staging
        if path.exists():
            old = path.with_name(f"{prefix}old.tmp")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@torch.no_grad()
def nonfinite_tensors(named: Iterable[tuple[str, Tensor]]) -> list[str]:
    """Names of the floating-point tensors in ``named`` that hold a nan or an infinity (one device sync in all);
    other values (integer buffers, a module's extra state) are skipped."""
    floats = [(name, t) for name, t in named if isinstance(t, Tensor) and t.is_floating_point()]
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(t).all() for _, t in floats]).tolist()
    return [name for (name, _), ok in zip(floats, finite) if not ok]


def describe_tensors(names: list[str], limit: int = 3) -> str:
    """``names`` as a short list for a message: the first ``limit`` and how many more."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, named by its path (``ema.module.stem.0.weight``)."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_entries(obj: Any) -> list[str]:
    """Names of the floating-point tensors anywhere in ``obj`` that hold a nan or an infinity."""
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in _tensors(obj):     # one check per device (an optimizer's step counts stay on the CPU)
        by_device.setdefault(tensor.device, []).append((name, tensor))
    return [name for named in by_device.values() for name in nonfinite_tensors(named)]


VERSION_KEY = "mpq_version"      # every checkpoint records the version of mpq that wrote it


def package_version() -> str:
    """This package's version (its installed metadata, which ``mpq.__version__`` repeats)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mpq")
    except PackageNotFoundError:
        return "unknown"


def written_by(state: Mapping[str, Any]) -> str:
    """Which version wrote a checkpoint, in words: ``mpq 0.1.0``, or an unknown one (files from before the record)."""
    value = state.get(VERSION_KEY)
    return f"mpq {value}" if isinstance(value, str) else "an unknown version of mpq"   # files from before the record


def save_checkpoint(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically; the same ``obj`` gives the same bytes (DVC skips what depends on an unchanged file).

    Saved through a file object: given a path, torch names the archive's records after the file, here a random
    temporary name, which made every re-run write new bytes. A tensor holding nan or inf is refused (ValueError
    naming it): no reader could use such weights, and a file that exists is taken for a result. A dict is saved
    with the version of mpq that wrote it (``VERSION_KEY``), so a reader can say which one wrote options it does
    not know (``stored_config``).
    """
    bad = nonfinite_entries(obj)
    if bad:
        raise ValueError(f"checkpoint {path} not written: it would hold nan or inf in {describe_tensors(bad)}")
    if isinstance(obj, dict):
        obj = {**obj, VERSION_KEY: package_version()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not the one asked for; the message names the file and the fix."""


def load_checkpoint(path: str | Path, *, fix: str = "re-run the stage that writes it (`dvc repro`)") -> dict:
    """Read a checkpoint written by ``save_checkpoint``: tensors and plain values only (``weights_only``).

    A missing, truncated, corrupt or foreign file, or one holding a tensor with nan or inf, raises one
    ``CheckpointError`` naming the file and ``fix``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; {fix}")
    record = release_record(path, fix)
    source: Path | io.BytesIO = path
    if record is not None:              # a released supernet: the file must be the one its record describes
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise CheckpointError(f"checkpoint {path} does not match its record {path.with_suffix('.json')}: its "
                                  "sha256 differs from the recorded one (a damaged file, or one of another release); "
                                  f"restore both from one release (e.g. `git checkout {path.parent}`)")
        source = io.BytesIO(data)
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
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
    bad = nonfinite_entries(state)
    if bad:
        raise CheckpointError(f"checkpoint {path} holds nan or inf in {describe_tensors(bad)}: its weights are "
                              f"unusable; delete it and {fix}")
    return state


def release_record(path: Path, fix: str) -> dict | None:
    """The record beside a released checkpoint (``MODEL.json`` beside ``MODEL.pt``, ``mpq.deploy.release``), which
    pins the file by its sha256; None where there is none. A damaged record, or one naming another file, is refused."""
    record = path.with_suffix(".json")
    if record == path or not record.is_file():
        return None
    try:
        info = json.loads(record.read_text())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{record}, the record beside checkpoint {path}, is not valid JSON (damaged); restore "
                              f"it (e.g. `git checkout {record}`), or delete both and {fix}") from None
    if not isinstance(info, dict) or "sha256" not in info:
        return None                    # some other file that happens to share the name: no record
    if info.get("file") != path.name or not isinstance(info["sha256"], str):
        raise CheckpointError(f"{record}, the record beside checkpoint {path}, describes file {info.get('file')!r} "
                              f"with sha256 {info['sha256']!r}; restore both from one release (e.g. `git checkout "
                              f"{path.parent}`)")
    return info


def require_keys(state: dict, keys: tuple[str, ...], path: str | Path, fix: str) -> None:
    """Refuse a checkpoint that lacks entries (an older format, or another program's file)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: an older format or another program's file; "
                              f"delete it and {fix}")


def stored_config(cls: type, state: Mapping[str, Any], path: str | Path, fix: str) -> Any:
    """The config dataclass ``cls`` a checkpoint's ``config`` entry was trained with, checked as a params section
    is. Options this version does not know (a newer version's) are refused naming them and the version that wrote
    the file; a value of the wrong type or out of range is refused naming it."""
    import dataclasses

    from mpq.config import from_dict

    config = state.get("config")
    if not isinstance(config, Mapping):
        raise CheckpointError(f"checkpoint {path} holds config {config!r}, not a mapping of training options; {fix}")
    unknown = sorted(str(k) for k in set(config) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise CheckpointError(f"checkpoint {path} was written by {written_by(state)} with training options "
                              f"{unknown} that this version (mpq {package_version()}) does not know; read it with the "
                              f"version that wrote it, or {fix}")
    try:
        return from_dict(cls, config, "config")
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} holds an invalid training config ({exc}); {fix}") from None


def check_matches(path: str | Path, what: str, stored: Any, expected: Any, fix: str) -> None:
    """Refuse a checkpoint whose ``what`` (model, width, classes, ...) differs from the one asked for."""
    if stored != expected:
        raise CheckpointError(f"checkpoint {path} has {what} {stored!r}, but {expected!r} was asked for; {fix}")


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def machine_record() -> dict:
    """The machine a stage ran on: CPU kind (``torch.backends.cpu.get_cpu_capability()``), threads, device."""
    import platform

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "device": torch.cuda.get_device_name(0) if cuda else "cpu"}


def write_stage_record(stage: str, seconds: float, root: str | Path = "reports/stages",
                       timings: dict | None = None) -> Path:
    """``reports/stages/<stage>.json``: a compute stage's wall time, its machine and any ``timings`` of its
    parts (seconds per model, per search, ...). Kept apart from the stage's results (DESIGN.md section 6: wall
    times stay out of every output a later stage depends on), so a stage that reproduces its results does not
    re-run the stages downstream; only the pages read it."""
    path = Path(root) / f"{stage}.json"
    write_json({"stage": stage, "stage_seconds": round(seconds, 1), **machine_record(),
                "timings": timings or {}}, path)
    return path


def split_timings(record: Any, keys: Iterable[str]) -> tuple[Any, Any]:
    """``(record without the keys, the keys' values)``: every entry named in ``keys`` at any depth of nested
    dicts moves to a parallel nested dict (``merge_timings`` puts it back). For results whose wall times belong
    in the stage record, not in the stage's outputs."""
    keys = set(keys)
    if not isinstance(record, Mapping):
        return record, None
    rest, times = {}, {}
    for key, value in record.items():
        if key in keys:
            times[key] = value
            continue
        rest[key], inner = split_timings(value, keys)
        if inner:
            times[key] = inner
    return rest, times


def merge_timings(record: Any, timings: Any) -> Any:
    """``record`` with the entries ``split_timings`` took out put back (a copy; missing timings stay absent)."""
    if not isinstance(record, Mapping) or not isinstance(timings, Mapping):
        return record
    out = {k: merge_timings(v, timings.get(str(k), timings.get(k))) for k, v in record.items()}
    for key, value in timings.items():
        if key not in out and str(key) not in {str(k) for k in out}:
            out[key] = value
    return out


def read_stage_result(path: str | Path, stage: str) -> Any:
    """A compute stage's stored result (JSON), refused in one line naming the file and the stage to pull or run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: fetch the stage's results with `dvc pull`, or run it with "
                              f"`dvc repro {stage}`")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is damaged ({exc}); run `dvc pull` again or `dvc repro {stage}`") from None


def read_stage_record(stage: str, root: str | Path = "reports/stages") -> dict:
    """The record ``write_stage_record`` wrote; an empty dict (no timings) where the stage has none yet."""
    path = Path(root) / f"{stage}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically (format from the suffix of ``path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)


# --- outputs, checked before the work -------------------------------------------------------------------

class OutputError(ValueError):
    """An output location that cannot take the output; the message names it, the reason and the fix."""


def _same_place(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (paths resolved, links followed)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _pathconf(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (OSError, ValueError):
        return default


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:                 # a name too long, a loop of links: nothing is there to use
        return False


def _check_names(out: Path, flag: str) -> None:
    """Refuse a path the file system cannot hold: a name (of the output, or of a folder to be created for it)
    longer than its NAME_MAX, or a whole path beyond PATH_MAX."""
    absolute = Path(os.path.abspath(out))
    anchor = absolute.parent
    while not _exists(anchor):
        anchor = anchor.parent
    name_max, path_max = _pathconf(anchor, "PC_NAME_MAX", 255), _pathconf(anchor, "PC_PATH_MAX", 4096)
    for part in absolute.relative_to(anchor).parts:              # the names to be created, the output's own last
        size = len(os.fsencode(part))
        if size > name_max:
            raise OutputError(f"{flag} {out}: the name {part[:24]}... is {size} bytes, longer than the {name_max} "
                              f"bytes a name may have on this file system; pass a shorter name")
    if len(os.fsencode(str(absolute))) >= path_max:
        raise OutputError(f"{flag} {out}: the path is longer than the {path_max} bytes this system allows; pass a "
                          "shorter one")


def check_output(path: str | Path, *, inputs: Iterable[str | Path | None] = (), flag: str = "--out",
                 folder: bool = False, result: str = "result.json") -> Path:
    """Refuse, before any work, an output location the work could not end in: one of the command's
    ``inputs`` (writing there would destroy it), for a file output an existing folder, for a folder output
    (``folder``: replaced as a whole when the work completes) an existing file, a folder that holds an
    input, or a non-empty folder that is not an earlier output of the command (no ``result`` file in it:
    replacing it would delete someone else's files), a name the file system cannot hold (longer than its
    NAME_MAX, a path beyond PATH_MAX, a NUL character, a file path ending in a slash), and a place where no
    file can be created (a missing or read-only folder, a file in the way).

    Nothing is created: the parent folder is probed with a temporary file that is removed at once.
    """
    if "\x00" in str(path):
        raise OutputError(f"{flag} {str(path)!r}: a path cannot hold a NUL character; pass another")
    if not folder and str(path).endswith(("/", os.sep)):
        raise OutputError(f"{flag} {path} ends with a slash, so it names a folder; pass a file path")
    out = Path(path)
    _check_names(out, flag)                  # first: a name too long makes every other look-up fail
    for given in inputs:
        if given is None:
            continue
        src = Path(given)
        if _same_place(out, src) or (folder and _inside(src, out)):
            raise OutputError(f"{flag} {out} would overwrite the input {src}; write the output elsewhere")
    if folder and out.exists() and not out.is_dir():
        raise OutputError(f"{flag} {out} is a file, but the output is a folder; pass a folder path")
    if folder and out.is_dir() and any(out.iterdir()) and not (out / result).is_file():
        raise OutputError(f"{flag} {out} is a folder holding other files (no {result} of an earlier run); it would "
                          "be replaced as a whole when the work completes: pass a new or empty folder")
    if not folder and out.is_dir():
        raise OutputError(f"{flag} {out} is a folder; pass a file path (e.g. {out / 'result.json'})")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {out}: {parent} is a file, not a folder; pass a path under a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mpq-write-check.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{flag} {out}: cannot write in {parent} ({exc.strerror}); pass a writable location") from None
    return out


# --- how a command ends: user errors and Ctrl-C as one line ----------------------------------------------

class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with the last complete checkpoint: ``checkpoint`` (None: none written),
    holding ``epoch`` of ``epochs`` epochs."""

    def __init__(self, checkpoint: str | Path | None, epoch: int, epochs: int) -> None:
        self.checkpoint, self.epoch, self.epochs = checkpoint, epoch, epochs
        where = (f"the last complete checkpoint is {checkpoint} (epoch {epoch} of {epochs})" if checkpoint is not None
                 else "no checkpoint of this training was written yet")
        super().__init__(f"interrupted during training; {where}")


def latest_checkpoint(folders: Iterable[str | Path], since: float) -> Path | None:
    """The newest complete ``*.pt`` file under ``folders`` written at or after ``since`` (a ``time.time()``);
    temporary files of writes in progress do not count."""
    found = [p for f in folders if Path(f).is_dir() for p in Path(f).rglob("*.pt")
             if not p.name.startswith(".") and p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


USER_ERRORS = (ValueError, DataError, FileNotFoundError)   # CheckpointError, OutputError and config errors included


def run_command(body: Callable[[], int], prog: str, argv: Sequence[str] | None = None, *,
                checkpoints: Sequence[str | Path] = (), resumes: bool = True) -> int:
    """Run a command line's ``body``: a user's mistake (``USER_ERRORS``) is one line, exit status 2; Ctrl-C is
    one line, exit status 130, naming the last complete checkpoint (from the training, else the newest file
    this run wrote under ``checkpoints``) and the command that resumes (``resumes``: the same command; else it
    says that nothing was written and the command starts over)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", prog, *argv])
    start = time.time()
    try:
        return body()
    except KeyboardInterrupt as exc:
        if not resumes:
            print(f"interrupted: nothing was written (the output is written only when the command completes); "
                  f"run it again: {command}", file=sys.stderr)
        else:       # a TrainingInterrupted names its checkpoint; otherwise the newest file this run wrote
            last = latest_checkpoint(checkpoints, start)
            where = f"the last checkpoint written is {last}" if last else "this run wrote no checkpoint"
            print(f"{str(exc) or f'interrupted; {where}'}; resume with: {command}", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
