"""The full-precision starting points (notebook 01; the FP rows of the paper's Tables 2-4).

Every quantized model of the study starts from an FP checkpoint, as in the paper (Tang et al., CVPR 2024,
section 4). ``train_fp_models`` trains one float model per model spec and writes ``<folder>/<model>.pt``;
``fp_table`` and ``fp_findings`` turn its metrics into the notebook's table and findings.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch

from mpq.config import DataConfig, FPConfig, ModelSpec
from mpq.data.datasets import Splits
from mpq.models import create_model
from mpq.training.checkpoint import save_checkpoint
from mpq.training.fp import train_fp

log = logging.getLogger(__name__)


def train_fp_models(specs: Sequence[ModelSpec], splits: Splits, data_cfg: DataConfig, fp_cfg: FPConfig, *,
                    seed: int, device: torch.device, folder: str | Path = "checkpoints/fp",
                    progress: bool = True) -> dict[str, dict]:
    """Train each model of ``specs`` in full precision on ``splits.train`` and write ``folder/<model>.pt``.

    Per model the global torch seed is set to ``seed`` before the model is built, so its initialisation does
    not depend on the models before it. The checkpoint holds model name, width, classes, weights and the
    history without wall times (a re-run writes the same bytes). Returns ``{"histories": model -> history
    (with times), "models": model -> metrics}`` (test accuracy, parameters, width, epochs, images, times).
    """
    num_classes = len(splits.train.classes)
    histories, metrics = {}, {}
    for spec in specs:
        torch.manual_seed(seed)
        model = create_model(spec.name, num_classes=num_classes, width_mult=spec.width_mult)
        start = time.perf_counter()
        history = train_fp(model, splits.train, splits.test, epochs=fp_cfg.epochs, batch_size=data_cfg.batch_size,
                           lr=fp_cfg.lr, momentum=fp_cfg.momentum, weight_decay=fp_cfg.weight_decay,
                           warmup_epochs=fp_cfg.warmup_epochs, label_smoothing=fp_cfg.label_smoothing,
                           pad=data_cfg.pad, flip=data_cfg.flip, seed=seed, device=device, progress=progress)
        seconds = time.perf_counter() - start
        model.cpu()
        save_checkpoint({"model": spec.name, "width_mult": spec.width_mult, "num_classes": num_classes,
                         "state_dict": model.state_dict(),
                         "history": history.as_dict(times=False)},   # no wall times: a re-run writes the same bytes
                        Path(folder) / f"{spec.name}.pt")
        histories[spec.name] = history.as_dict()
        metrics[spec.name] = {
            "test_acc": history.test_acc[-1], "params": sum(p.numel() for p in model.parameters()),
            "width_mult": spec.width_mult, "epochs": fp_cfg.epochs, "train_images": len(splits.train),
            "train_seconds": round(seconds, 1),
            "train_img_per_s": round(fp_cfg.epochs * len(splits.train) / sum(history.seconds), 1),
        }
        print(spec.name, metrics[spec.name])
    return {"histories": histories, "models": metrics}


def fp_table(metrics: Mapping[str, Mapping]) -> pd.DataFrame:
    """Notebook 01's results table: one row per model (test top-1 in %, size, budget, wall time)."""
    return pd.DataFrame([{"model": n, "test top-1 (%)": 100 * m["test_acc"], "parameters": m["params"],
                          "width": m["width_mult"], "epochs": m["epochs"], "training images": m["train_images"],
                          "training (s)": m["train_seconds"], "training images/s": m["train_img_per_s"]}
                         for n, m in metrics.items()])


def fp_findings(metrics: Mapping[str, Mapping]) -> list[str]:
    """One findings line per model: the FP starting points of the paper's Tables 2-4."""
    return [f"{n} (width {m['width_mult']}, {m['params']:,} parameters): {100 * m['test_acc']:.2f}% top-1 after "
            f"{m['epochs']} epochs, {m['train_seconds']:.0f} s of training ({m['train_img_per_s']:.0f} images/s)"
            for n, m in metrics.items()]
