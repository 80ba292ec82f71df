"""The metrics as the pages read them: every ``reports/metrics/*.json``, each stage's wall time and machine, and
the few names and numbers every section writes the same way (display names of the models, levels, seeds)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

NOTEBOOKS = ("01_fp_train", "02_supernet", "03_baselines", "04_search", "05_bit_interference", "06_transfer")
MODEL_NAMES = {"resnet20": "ResNet-20", "mobilenetv2_28": "MobileNetV2-28", "efficientnet_lite_28": "EfficientNet-Lite-28"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "animal_mnist": "Animal-MNIST", "mnist5k": "MNIST-5k"}


def load_metrics(reports: str | Path) -> dict:
    """Every ``reports/metrics/*.json`` by stem (a missing file is simply absent)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(reports, "metrics").glob("*.json"))}


def notebook_environments(reports: str | Path) -> dict:
    """Wall time and machine of each stage that recorded them: ``metadata.mpq`` of each executed notebook present
    (a page stage; by the notebook's stem) and each compute stage's record ``reports/stages/<stage>.json`` (by the
    stage's name)."""
    out = {}
    for stem in NOTEBOOKS:
        path = Path(reports, f"{stem}.ipynb")
        if path.is_file():
            env = json.loads(path.read_text()).get("metadata", {}).get("mpq")      # no validation: metadata only
            if env:
                out[stem] = env
    for path in sorted(Path(reports, "stages").glob("*.json")):
        record = json.loads(path.read_text())
        out[record.get("stage", path.stem)] = {k: v for k, v in record.items() if k not in ("stage", "timings")}
    return out


def ordered_levels(search_model: dict) -> list[str]:
    return sorted(search_model["levels"], key=float, reverse=True)


def seed_note(m: dict) -> str:
    seed = m.get("search", {}).get("seed", m.get("supernet", {}).get("seed"))
    return f"one training seed, {seed}" if seed is not None else "one training seed"


def display_name(name: str) -> str:
    """A model's or an image set's name as the pages write it (the registry key where none is known).

    >>> display_name("resnet20"), display_name("animal_mnist"), display_name("tinynet")
    ('ResNet-20', 'Animal-MNIST', 'tinynet')
    """
    return MODEL_NAMES.get(name, DATASET_NAMES.get(name, name))


def seeds_text(seeds: Sequence) -> str:
    """Seeds as a reader writes them: a run of four or more consecutive seeds as a range.

    >>> seeds_text([0, 1, 2]), seeds_text(range(9)), seeds_text([0, 3, 4, 5, 6, 9])
    ('0, 1, 2', '0-8', '0, 3-6, 9')
    """
    seeds, parts, i = list(seeds), [], 0
    while i < len(seeds):
        j = i
        while (j + 1 < len(seeds) and isinstance(seeds[j], int) and isinstance(seeds[j + 1], int)
               and seeds[j + 1] == seeds[j] + 1):
            j += 1
        parts += [f"{seeds[i]}-{seeds[j]}"] if j - i >= 3 else [str(s) for s in seeds[i:j + 1]]
        i = j + 1
    return ", ".join(parts)


def count_span(lo_hi: list[int]) -> str:
    lo, hi = lo_hi
    return f"{lo}" if lo == hi else f"{lo}-{hi}"
