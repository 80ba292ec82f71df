"""Released supernets: the trained supernets as small plain files that ship with the repository.

    python -m mpq.deploy.release checkpoints/supernet models --profile default

For each finished one-shot checkpoint ``SRC/MODEL.pt`` writes ``OUT/MODEL.pt`` (the EMA weights, the
scheduler's last decision, the training config and the data identity: what ``python -m mpq search``,
``export`` and ``evaluate`` read; no optimizer state) and ``OUT/MODEL.json`` (what it is: model, width,
classes, bit choices, data identity, profile, epochs, the file's sha256). The DVC stage ``release`` runs
this after ``supernet``, so ``dvc repro`` refreshes the released files whenever the supernets change.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from mpq.data.datasets import sha256_file
from mpq.training.checkpoint import CheckpointError, atomic_folder, save_checkpoint, write_json
from mpq.training.oneshot import RELEASE_KEYS, SUPERNET_FIX, read_supernet_state, training_progress

log = logging.getLogger(__name__)


def release_one(src: Path, out_dir: Path, profile: str) -> dict:
    """Write ``out_dir/<src stem>.pt`` and ``.json`` from the finished one-shot checkpoint ``src``; return the JSON."""
    state = read_supernet_state(src)
    epoch, epochs, finished = training_progress(state)
    if not finished:
        raise CheckpointError(f"checkpoint {src} is unfinished (epoch {epoch} of {epochs}); finish its training "
                              "before releasing it")
    target = out_dir / f"{src.stem}.pt"
    # cloned: a tensor saved as a view writes its whole storage (training keeps parameters in shared buffers)
    ema = {k: v.clone() if torch.is_tensor(v) else v for k, v in state["ema"].items()}
    save_checkpoint({**{k: state[k] for k in RELEASE_KEYS}, "ema": ema}, target)
    meta, config = state["meta"], state["config"]
    info = {"model": meta["model"], "width_mult": meta["width_mult"], "num_classes": meta["num_classes"],
            "w_bit_choices": config["w_bit_choices"], "a_bit_choices": config["a_bit_choices"],
            "depthwise_min_bits": config["depthwise_min_bits"], "epochs": epochs, "profile": profile,
            "data": meta["data"], "file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size}
    write_json(info, out_dir / f"{src.stem}.json")
    return info


def release(src_dir: Path, out_dir: Path, profile: str) -> list[dict]:
    """Release every ``*.pt`` of ``src_dir`` into ``out_dir``, replacing the folder as a whole when all are written."""
    sources = sorted(p for p in Path(src_dir).glob("*.pt") if not p.name.startswith("."))
    if not sources:
        raise CheckpointError(f"{src_dir} holds no supernet checkpoint (*.pt); {SUPERNET_FIX}")
    with atomic_folder(out_dir) as staging:
        infos = [release_one(src, staging, profile) for src in sources]
    for info in infos:
        log.info("released %s: %d bytes", info["file"], info["bytes"])
    return infos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpq.deploy.release", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="folder of one-shot checkpoints (checkpoints/supernet)")
    parser.add_argument("out", help="folder of released supernets (models), replaced as a whole")
    parser.add_argument("--profile", default="default", help="the params profile the supernets were trained with")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mpq.training.checkpoint import run_command

    def body() -> int:
        release(Path(args.src), Path(args.out), args.profile)
        return 0

    return run_command(body, "mpq.deploy.release", argv, resumes=False)


if __name__ == "__main__":
    sys.exit(main())
