"""Transfer (mpq.studies.transfer, mpq.studies.transfer_tables): the new classifier, mismatch errors, a user's image
folder, T5's equal budgets, learning-rate grid, collapse flags and runs, the stage's folder (saved and read back,
no wall times, the command line), and the tables, metrics and findings the notebook shows."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mpq.config import load_params
from mpq.data.datasets import DataError
from mpq.method.layers import quant_layers
from mpq.method.supernet import Supernet
from mpq.models import create_model
from mpq.studies.stats import Verdict, paired_verdict
from mpq.studies.transfer import (FROM_FP, Budget, Sources, TransferConfig, TransferResult, Tuned, accuracy,
                                  arm_family, check_input_channels, choose_lr, fresh_float_model, flag_collapses,
                                  head_name, load_target, load_transfer, lr_grid, lsq_bits, paths_per_step,
                                  replace_head, retarget_supernet, run_record, run_transfer, save_transfer,
                                  target_budget, transfer_setup, widen_grid)
from mpq.studies.transfer_tables import (budget_table, choice_table, comparison_table, convergence_curves,
                                         convergence_table, fp_curves, grid_table, paired_comparisons,
                                         paired_differences, stage_passes, t5_table, transfer_figure,
                                         transfer_findings, transfer_metrics)
from mpq.training.checkpoint import CheckpointError, read_stage_record, save_checkpoint, write_json, write_stage_record
from mpq.training.fp import load_fp_model, predictions, train_fp
from mpq.training.oneshot import build_supernet, train_oneshot

pytestmark = pytest.mark.timeout(60)


def _trained_supernet(width=0.25):
    sn = Supernet(create_model("resnet20", width_mult=width), (1, 28, 28))
    sn.calibrate(torch.randn(16, 1, 28, 28))
    with torch.no_grad():                       # stand-in for training: move every weight and step size
        for p in sn.parameters():
            p.add_(0.01 * torch.randn_like(p)) if p.dim() > 1 else p.mul_(1.1)
    return sn


def test_replace_head_changes_only_the_classifier():
    model = create_model("resnet20", width_mult=0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    name = head_name(model)
    in_features = model.get_submodule(name).in_features
    replace_head(model, 7)
    head = model.get_submodule(name)
    assert (head.in_features, head.out_features) == (in_features, 7)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(name + "."))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)


def test_retarget_supernet_keeps_everything_but_the_classifier():
    source = _trained_supernet()
    x = torch.randn(16, 1, 28, 28)
    target = retarget_supernet(source, create_model("resnet20", num_classes=5, width_mult=0.25), x)
    head = head_name(target.model)
    src, dst = source.state_dict(), target.state_dict()
    shared = [k for k in src if not k.startswith(f"model.{head}.")]
    assert shared and all(torch.equal(src[k], dst[k]) for k in shared if isinstance(src[k], torch.Tensor))
    layer = quant_layers(target.model)[head]
    assert layer.out_features == 5
    assert target.choices == source.choices and target.fixed_names == source.fixed_names
    target.set_config(target.uniform_config(3))
    assert target(x).shape == (16, 5)
    steps = layer.weight_quantizer.step_size
    assert all(float(v.detach()) > 0 for v in steps.values())     # the classifier's quantizers were initialised


def test_retarget_refuses_another_architecture_and_other_channels():
    source = _trained_supernet(width=0.5)
    with pytest.raises(CheckpointError, match="does not fit the target model"):
        retarget_supernet(source, create_model("resnet20", num_classes=5, width_mult=0.25), torch.randn(4, 1, 28, 28))
    with pytest.raises(ValueError, match="3 channel\\(s\\) but the model takes 1"):
        check_input_channels(source, torch.randn(4, 3, 28, 28))


def _image_folder(root, classes=("cat", "dog"), per_class=12):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (20 + i, 30) if i % 2 else (40, 40)
            if i % 3 == 0:          # colour
                arr = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                Image.fromarray(arr, "RGB").save(root / name / f"{i}.png")
            else:                   # grey
                arr = np.full(size, 40 + 150 * c, dtype=np.uint8)
                Image.fromarray(arr, "L").save(root / name / f"{i}.jpg")
    return root


def test_image_folder_target_grey_and_colour_any_size(tmp_path):
    root = _image_folder(tmp_path / "pets")
    cfg = TransferConfig(targets=("folder",), root=str(root), score_size=4, calib_size=4, test_fraction=0.25)
    splits = load_target("folder", cfg, seed=0)
    assert splits.train.classes == ("cat", "dog")
    assert splits.train.images.shape[1:] == (1, 28, 28) and splits.train.images.dtype == torch.uint8
    assert len(splits.test) == 6 and len(splits.score) == 4 and len(splits.calib) == 4 and len(splits.train) == 10
    assert splits.identity["name"] == "folder"


def test_image_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="transfer.root is empty"):
        TransferConfig(targets=("folder",))
    one = _image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="need at least 2"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(one)), seed=0)
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) \['a', 'b'\] hold no images"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(empty)), seed=0)
    broken = _image_folder(tmp_path / "broken")
    (broken / "dog" / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="remove or replace the file"):
        load_target("folder", TransferConfig(targets=("folder",), root=str(broken)), seed=0)


# --- T5: equal budgets, the rate grid, collapse flags ---------------------------------------------------------

def test_budget_gives_every_arm_the_same_passes_over_the_same_images():
    b = target_budget(184, 3000, 128, 4)                    # 23 batches per epoch, 4 passes per supernet step
    assert (b.steps_per_epoch, b.supernet_epochs, b.passes) == (23, 2, 184)
    assert (b.epochs(1), b.steps(1)) == (8, 184)            # FP and LSQ: one pass per step
    assert (b.epochs(4), b.steps(4)) == (2, 46)             # supernets: 46 steps x 4 passes
    assert b.steps(1) * 1 == b.steps(4) * 4 == b.passes
    assert target_budget(200, 7000, 128, 4).passes == 216   # 54 batches: one supernet epoch is nearest
    assert target_budget(10, 7000, 128, 4).supernet_epochs == 1          # never less than one epoch
    with pytest.raises(ValueError, match="1 or 4 passes per step"):
        b.epochs(2)
    with pytest.raises(ValueError, match="no full batch"):
        target_budget(100, 100, 128, 4)


def test_arms_families_and_passes_per_step():
    tune = dataclasses.replace(transfer_setup(**_sections(), device=torch.device("cpu")).tune, num_random_paths=3)
    assert [arm_family(a) for a in ("FP", "LSQ W3A3", "this method", FROM_FP)] == [
        "FP", "LSQ", "supernet", "supernet"]
    assert [paths_per_step(a, tune) for a in ("FP", "LSQ W4A4", "this method", FROM_FP)] == [
        1, 1, 4, 4]
    assert lsq_bits("LSQ W3A3") == 3
    with pytest.raises(ValueError):
        lsq_bits("LSQ W3A4")
    with pytest.raises(ValueError, match="unknown arm"):
        arm_family("FP16")


def test_choose_lr_takes_the_best_heldout_rate_and_ties_go_to_the_smaller():
    rows = [{"lr": 0.02, "heldout top-1": 80.0}, {"lr": 0.05, "heldout top-1": 84.0},
            {"lr": 0.1, "heldout top-1": 84.0}]
    assert choose_lr(rows) == 0.05
    assert choose_lr(rows[:1]) == 0.02


def test_transfer_config_refuses_a_grid_seed_among_the_seeds_and_empty_grids():
    with pytest.raises(ValueError, match="grid_seed 1 is one of transfer.seeds"):
        TransferConfig(seeds=(0, 1, 2), grid_seed=1)
    with pytest.raises(ValueError, match="transfer.lsq_lrs must list distinct positive"):
        TransferConfig(lsq_lrs=())
    with pytest.raises(ValueError, match="grid_images must lie in"):
        TransferConfig(grid_images=0.0)
    with pytest.raises(ValueError, match="curve_multiple must be 2 or more"):
        TransferConfig(curve_multiple=1)
    with pytest.raises(ValueError, match="transfer.widen_factor must be a number above 1"):
        TransferConfig(widen_factor=1.0)
    with pytest.raises(ValueError, match="transfer.max_widenings must be a whole number >= 0"):
        TransferConfig(max_widenings=-1)


def _peak(at: float):
    """A fake held-out score of a learning rate, best at ``at`` (on a log scale), and the rates it was asked for."""
    asked = []

    def score(lr):
        asked.append(lr)
        return 90.0 - abs(math.log(lr / at))
    return score, asked


def test_widen_grid_moves_an_edge_choice_inside():
    # best above the grid: one rate added on top per widening until the best lies inside
    score, asked = _peak(0.4)
    g = widen_grid([0.05, 0.1, 0.2], score, factor=2.0, max_widenings=3)
    assert (g.grid, g.chosen, g.widenings, g.inside) == ((0.05, 0.1, 0.2, 0.4, 0.8), 0.4, 2, True)
    assert asked == [0.05, 0.1, 0.2, 0.4, 0.8]                         # each rate scored once, in this order
    assert [(lr, w) for lr, _, w in g.tried] == [(0.05, 0), (0.1, 0), (0.2, 0), (0.4, 1), (0.8, 2)]
    assert g.tried[3][1] == pytest.approx(90.0)
    # best below: rates added underneath (divided by the factor, at 4 significant digits)
    g = widen_grid([0.05, 0.1, 0.2], _peak(0.02)[0], factor=2.0, max_widenings=3)
    assert (g.grid, g.chosen, g.widenings, g.inside) == ((0.0125, 0.025, 0.05, 0.1, 0.2), 0.025, 2, True)
    # a choice already inside: no widening; a grid of one rate widens on both sides at once
    score, asked = _peak(0.1)
    assert widen_grid([0.05, 0.1, 0.2], score, factor=2.0, max_widenings=3).widenings == 0 and len(asked) == 3
    g = widen_grid([0.1], _peak(0.1)[0], factor=3.0, max_widenings=1)
    assert (g.grid, g.chosen, g.widenings, g.inside) == ((0.03333, 0.1, 0.3), 0.1, 1, True)
    # still at the edge after the allowed widenings: returned as such, for the page to report
    g = widen_grid([0.05, 0.1], _peak(10.0)[0], factor=2.0, max_widenings=2)
    assert (g.grid, g.chosen, g.widenings, g.inside) == ((0.05, 0.1, 0.2, 0.4), 0.4, 2, False)
    g = widen_grid([0.05, 0.1], _peak(10.0)[0], factor=2.0, max_widenings=0)
    assert (g.grid, g.chosen, g.widenings, g.inside) == ((0.05, 0.1), 0.1, 0, False)
    # a tie goes to the smaller rate, so a tie at the bottom edge widens downwards
    g = widen_grid([0.01, 0.03], lambda lr: 71.0 if lr >= 0.01 else 60.0, factor=2.0, max_widenings=3)
    assert (g.grid, g.chosen, g.inside) == ((0.005, 0.01, 0.03), 0.01, True)


def test_lr_grid_tunes_every_arm_on_its_own_grid_on_the_heldout_images_only(monkeypatch, tiny_splits):
    """Every arm (FP, each LSQ bit-width, both supernets) has its own grid, widened until its choice is inside; every
    grid run trains on a share of the training images at the grid seed and is scored on the held-out images it is
    given; the test split is no argument of the grid, and the choice follows the held-out scores."""
    import mpq.studies.transfer as transfer

    setup = transfer_setup(**_sections(fp_lrs=[0.02, 0.05, 0.1], lsq_lrs=[0.01, 0.03], supernet_lrs=[0.01, 0.03],
                                       grid_seed=7, grid_images=0.5, baseline_bits=[3, 4], widen_factor=2.0,
                                       max_widenings=2),
                           device=torch.device("cpu"))
    peaks = {"FP": 0.05, "LSQ W3A3": 0.06, "LSQ W4A4": 10.0, "this method": 0.01, FROM_FP: 0.012}
    seen = []

    def fake_fine_tune(setup, arm, train, heldout, calib, *, seed, lr, budget, sources, kw, **_):
        seen.append((arm, lr, seed, train, heldout, calib))
        paths = transfer.paths_per_step(arm, setup.tune)
        return Tuned(arm, lr, seed, budget.epochs(paths), budget.steps(paths), budget.passes, [1.0], 0.0)

    def fake_selection(tuned, heldout, calib, bits):
        assert heldout is tiny_splits.score and calib is tiny_splits.calib and tuple(bits) == (3, 4)
        return 90.0 - abs(math.log(tuned.lr / peaks[tuned.arm]))

    monkeypatch.setattr(transfer, "fine_tune", fake_fine_tune)
    monkeypatch.setattr(transfer, "selection_top1", fake_selection)
    monkeypatch.setattr(transfer, "heldout_predictions", lambda tuned, heldout, calib, bits=None: heldout.labels)
    budget = Budget(steps_per_epoch=len(tiny_splits.train) // 32, paths=4, supernet_epochs=1)
    rows, choices = lr_grid(setup, "t", tiny_splits.train, tiny_splits.score, tiny_splits.calib, budget,
                            Sources(create_model("resnet20", width_mult=0.25)), {"batch_size": 32})
    got = {c["arm"]: (c["starting grid"], c["grid"], c["chosen"], c["widenings"], c["inside"]) for c in choices}
    assert got == {"FP": ([0.02, 0.05, 0.1], [0.02, 0.05, 0.1], 0.05, 0, True),
                   "LSQ W3A3": ([0.01, 0.03], [0.01, 0.03, 0.06, 0.12], 0.06, 2, True),
                   "LSQ W4A4": ([0.01, 0.03], [0.01, 0.03, 0.06, 0.12], 0.12, 2, False),    # at the edge: reported
                   "this method": ([0.01, 0.03], [0.005, 0.01, 0.03], 0.01, 1, True),
                   FROM_FP: ([0.01, 0.03], [0.005, 0.01, 0.03], 0.01, 1, True)}
    assert [c["target"] for c in choices] == ["t"] * 5 and choices[0]["heldout top-1"] == pytest.approx(90.0)
    assert [(r["arm"], r["lr"], r["round"], r["chosen"]) for r in rows if r["arm"] in ("FP", "LSQ W3A3")] == [
        ("FP", 0.02, 0, False), ("FP", 0.05, 0, True), ("FP", 0.1, 0, False), ("LSQ W3A3", 0.01, 0, False),
        ("LSQ W3A3", 0.03, 0, False), ("LSQ W3A3", 0.06, 1, True), ("LSQ W3A3", 0.12, 2, False)]
    assert len(rows) == 3 + 4 + 4 + 3 + 3 and [(a, lr) for a, lr, *_ in seen] == [(r["arm"], r["lr"]) for r in rows]
    # each arm's own compute beside its passes: a supernet makes a quarter of the optimizer steps
    assert {r["arm"]: (r["steps"], r["passes"]) for r in rows} == {
        "FP": (16, 16), "LSQ W3A3": (16, 16), "LSQ W4A4": (16, 16), "this method": (4, 16), FROM_FP: (4, 16)}
    for arm, lr, seed, train, heldout, calib in seen:
        assert seed == 7 and heldout is tiny_splits.score and calib is tiny_splits.calib
        assert len(train) == 128 and torch.equal(train.images, tiny_splits.train.images[:128])   # half, a prefix
    assert all(r["passes"] == budget.passes // 2 and r["seed"] == 7 for r in rows)     # half the batches
    assert "test" not in lr_grid.__code__.co_varnames[:lr_grid.__code__.co_argcount]
    table = choice_table(choices)
    assert list(table.grid) == ["0.02, 0.05, 0.1", "0.01, 0.03, 0.06, 0.12", "0.01, 0.03, 0.06, 0.12",
                                "0.005, 0.01, 0.03", "0.005, 0.01, 0.03"]
    assert list(grid_table(rows).columns[:4]) == ["target", "arm", "lr", "round"]


# --- T5: tables, metrics and findings from hand-made records --------------------------------------------------

LABELS = torch.tensor([0, 1, 0, 1])
HELDOUT = 100                       # held-out images of the hand-made runs


def _preds(correct: int) -> torch.Tensor:
    """Predictions of ``LABELS`` with the first ``correct`` right (top-1 = correct / 4)."""
    return torch.where(torch.arange(4) < correct, LABELS, 1 - LABELS)


def _heldout(top1: float) -> torch.Tensor:
    """Per-image correctness of ``HELDOUT`` held-out images with the first ``top1`` percent right."""
    return torch.arange(HELDOUT) < round(top1 * HELDOUT / 100)


BUDGET = Budget(steps_per_epoch=2, paths=4, supernet_epochs=1)      # 8 passes per arm


def _records(finite=True):
    """Three seeds of one target, T5's arm order. Test top-1 per seed: FP 4/4, 3/4, 4/4; LSQ W3A3 2/4, 2/4, 1/4;
    this method @3 3/4, 4/4, 3/4, @2.9 1/4, 2/4, 2/4; from the FP model @3 1/4, 1/4, 0/4, @2.9 0/4, 1/4, 0/4.
    Held-out top-1 of the max paths: FP 90-92, LSQ 80-82, this method 85-87, from the FP model 85, 84 and 50 (seed 2
    collapsed: 34 points under the median); the supernets' selection score (their uniform configurations) 5 points
    under their max path's. Each arm at its own rate."""
    correct = {("FP", 32): (4, 3, 4), ("LSQ W3A3", 3): (2, 2, 1), ("this method", 3): (3, 4, 3),
               ("this method", 2.9): (1, 2, 2), (FROM_FP, 3): (1, 1, 0),
               (FROM_FP, 2.9): (0, 1, 0)}
    heldout = {"FP": (90, 91, 92), "LSQ W3A3": (80, 81, 82), "this method": (85, 86, 87),
               FROM_FP: (85, 84, 50)}
    records = []
    for s in (0, 1, 2):
        for (arm, level), right in correct.items():
            paths = 4 if arm_family(arm) == "supernet" else 1
            correct_heldout = _heldout(heldout[arm][s])
            selection = heldout[arm][s] - (5 if paths > 1 else 0)
            common = {"lr": RATES[arm], "epochs": BUDGET.epochs(paths), "steps": BUDGET.steps(paths),
                      "passes": BUDGET.passes, "losses finite": finite or arm != "LSQ W3A3" or s != 0,
                      "heldout top-1": float(heldout[arm][s]), "heldout_correct": correct_heldout,
                      "selection top-1": float(selection),
                      "selection_correct": correct_heldout if paths == 1 else _heldout(selection).float()}
            if arm == "FP":
                common["curve"] = [50.0, 80.0, 88.0, float(heldout[arm][s])]
            extra = {} if arm_family(arm) != "supernet" else {"search_seconds": 2.0 + s, "found_level": level,
                                                               "bit_cfg": {"w": [level]}}
            records.append(run_record("t", s, arm, level, _preds(right[s]), LABELS,
                                      None if arm == "FP" else level / 10, 10.0 * (s + 1), **common, **extra))
    return flag_collapses(records, 10.0)


RATES = {"FP": 0.05, "LSQ W3A3": 0.03, "this method": 0.01, FROM_FP: 0.02}     # each arm's chosen rate


def _longer(arm: str, top1: float, heldout: float | None = None) -> dict:
    """An arm's run of twice the budget: its selection score ``top1`` (%), its max path's ``heldout`` (% or the same)."""
    paths = 4 if arm_family(arm) == "supernet" else 1
    heldout = top1 if heldout is None else heldout
    row = {"target": "t", "arm": arm, "seed": 0, "multiple": 2, "lr": RATES[arm], "epochs": 2 * BUDGET.epochs(paths),
           "steps": 2 * BUDGET.steps(paths), "passes": 16, "losses finite": True, "heldout top-1": heldout,
           "heldout_correct": _heldout(heldout), "selection top-1": top1,
           "selection_correct": _heldout(top1) if paths == 1 else _heldout(top1).float()}
    return row | ({"curve": [55.0, 82.0, 89.0, 91.0, 92.0, 93.0, 93.0, 93.0]} if arm == "FP" else {})


def _result(records=None):
    """``_records`` with FP's grid (widened once), every arm's choice, and every arm's run of twice the budget: FP
    90 -> 93 (still rising), LSQ 80 -> 80, this method 80 -> 84 (still rising), from the FP model 80 -> 80."""
    records = _records() if records is None else records
    longer = [_longer("FP", 93.0), _longer("LSQ W3A3", 80.0), _longer("this method", 84.0, 88.0),
              _longer(FROM_FP, 80.0, 85.0)]
    grid = [{"target": "t", "family": "FP", "arm": "FP", "lr": lr, "round": r, "seed": 100, "train images": 2,
             "epochs": 4, "steps": 4, "passes": 4, "heldout top-1": acc, "max path heldout top-1": acc,
             "losses finite": True, "chosen": lr == 0.05} for lr, r, acc in ((0.02, 0, 88.0), (0.05, 0, 90.0),
                                                                             (0.1, 1, 89.0))]
    choices = [{"target": "t", "arm": arm, "starting grid": start, "grid": grid_, "chosen": RATES[arm],
                "inside": grid_[0] < RATES[arm] < grid_[-1], "widenings": w, "heldout top-1": acc}
               for arm, start, grid_, w, acc in (("FP", [0.02, 0.05], [0.02, 0.05, 0.1], 1, 90.0),
                                                 ("LSQ W3A3", [0.01, 0.03], [0.01, 0.03, 0.06], 1, 81.0),
                                                 ("this method", [0.01, 0.03], [0.01, 0.03], 0, 82.0),
                                                 (FROM_FP, [0.01, 0.02, 0.04], [0.01, 0.02, 0.04], 0, 79.0))]
    return TransferResult(records=records, grid=grid, choices=choices, longer=longer, budgets={"t": BUDGET},
                          seconds=12.345)


def test_run_record_keeps_the_key_order_of_the_metrics():
    r = run_record("t", 1, "this method", 3, _preds(2), LABELS, 0.5, 7.0, search_seconds=1.0, found_level=2.9)
    assert list(r) == ["target", "seed", "arm", "level", "preds", "labels", "gbitops", "tune_seconds",
                       "search_seconds", "found_level"]
    assert accuracy(r["preds"], r["labels"]) == 0.5


def test_flag_collapses_marks_runs_far_under_their_median_and_non_finite_losses():
    flagged = {(r["arm"], r["seed"], r["level"]) for r in _records() if r["collapsed"]}
    assert flagged == {(FROM_FP, 2, 3), (FROM_FP, 2, 2.9)}
    why = next(r["collapse"] for r in _records() if r["collapsed"])
    assert why == "held-out top-1 50.00% is 34.00 points under the median of its seeds (84.00%)"
    nan_run = [r for r in _records(finite=False) if r["collapsed"] and r["arm"] == "LSQ W3A3"]
    assert [(r["seed"], r["collapse"]) for r in nan_run] == [(0, "a training loss was not finite")]
    assert all(r["collapse"] is None for r in _records() if not r["collapsed"])
    # every seed of a supernet arm far under FP fine-tuned with the same seed: no median can show it, FP does
    low = [dict(r, **{"heldout top-1": r["heldout top-1"] - 30}) if r["arm"] == "this method" else r
           for r in _records()]
    again = flag_collapses(low, 10.0)
    assert {r["seed"] for r in again if r["arm"] == "this method" and r["collapsed"]} == {0, 1, 2}
    assert next(r["collapse"] for r in again if r["arm"] == "this method") == (
        "max path 55.00% on held-out images is 35.00 points under FP fine-tuned with the same seed (90.00%)")
    lsq_low = flag_collapses([dict(r, **{"heldout top-1": 50.0}) if r["arm"] == "LSQ W3A3" else r
                              for r in _records()], 10.0)
    assert not any(r["collapsed"] for r in lsq_low if r["arm"] == "LSQ W3A3")     # LSQ's only path is low-bit


def test_t5_table_rows_in_record_order_with_hand_computed_values_and_collapses_shown():
    t5 = t5_table(_records())
    assert list(t5.columns) == ["target", "method", "W/A level", "seeds", "top-1 mean", "top-1 SD", "per seed",
                                "collapsed", "G-BitOPs", "lr", "optimizer steps", "passes", "fine-tune s (per run)",
                                "search s"]
    assert list(t5.method) == ["FP", "LSQ W3A3", "this method, no retraining", "this method, no retraining",
                               "supernet from the FP model (no one-shot pre-training), no retraining",
                               "supernet from the FP model (no one-shot pre-training), no retraining"]
    assert list(t5["W/A level"]) == ["32/32", "3.0", "3.0", "2.9", "3.0", "2.9"]     # levels share a float column
    fp, lsq, ours3, scratch3 = t5.iloc[0], t5.iloc[1], t5.iloc[2], t5.iloc[4]
    assert fp["top-1 mean"] == pytest.approx(275 / 3) and fp["per seed"] == "100.00 / 75.00 / 100.00"
    assert fp["top-1 SD"] == pytest.approx(np.std([100, 75, 100], ddof=1))
    assert lsq["top-1 mean"] == pytest.approx(125 / 3) and lsq["G-BitOPs"] == pytest.approx(0.3)
    assert math.isnan(fp["G-BitOPs"]) and ours3["search s"] == 3.0 and fp["fine-tune s (per run)"] == 20.0
    # the collapsed run is marked, counted, and stays in the mean
    assert scratch3["per seed"] == "25.00 / 25.00 / 0.00 (collapsed)" and scratch3.collapsed == 1
    assert scratch3["top-1 mean"] == pytest.approx(50 / 3) and (t5.collapsed.iloc[:4] == 0).all()
    assert (t5.passes == 8).all() and list(t5.lr) == [0.05, 0.03, 0.01, 0.01, 0.02, 0.02]     # each arm's own rate
    assert list(t5["optimizer steps"]) == [8, 8, 2, 2, 2, 2]                          # beside the equal passes
    compute = budget_table(_result())
    assert [(r.arm, r.lr, r["optimizer steps"], r.passes) for _, r in compute.iterrows()] == [
        ("FP", 0.05, 8, 8), ("LSQ W3A3", 0.03, 8, 8), ("this method", 0.01, 2, 8), (FROM_FP, 0.02, 2, 8)]
    one_seed = t5_table([r for r in _records() if r["seed"] == 0])
    assert (one_seed.seeds == 1).all() and one_seed["top-1 SD"].isna().all()


def test_paired_comparisons_use_both_noise_sources_and_the_papers_direction():
    records = _records()
    assert paired_differences(records, "t", (0, 1, 2), "this method", 3, "LSQ W3A3", 3) == [25.0, 50.0, 50.0]
    comparisons = paired_comparisons(records, ("t",), (3, 2.9), (0, 1, 2), (3,))
    assert [(c["level"], c["this method minus"]) for c in comparisons] == [
        (3, "LSQ W3A3"), (3, FROM_FP), (2.9, FROM_FP)]
    ours = np.stack([(_preds(k) == LABELS).numpy() for k in (3, 4, 3)])
    lsq = np.stack([(_preds(k) == LABELS).numpy() for k in (2, 2, 1)])
    expected = paired_verdict(ours, lsq, expected=1)
    v = comparisons[0]["verdict"]
    assert isinstance(v, Verdict) and v == expected and v.expected == 1 and v.n == 3
    assert v.se_images > 0 and v.se >= v.se_images                     # test-image noise inside the interval
    assert comparisons[1]["verdict"].expected == 0                      # the paper states no direction there
    assert comparisons[0]["per seed"] == "+25.00 / +50.00 / +50.00" and comparisons[0]["mean (points)"] == v.diff
    assert [c["collapsed runs"] for c in comparisons] == [0, 1, 1]
    table = comparison_table(comparisons)
    assert list(table.columns) == ["target", "level", "this method minus", "mean (points)", "per seed",
                                   "collapsed runs", "95% interval", "verdict"]
    assert table.verdict.iloc[0] == v.text() and table["95% interval"].iloc[0] == f"[{v.low:+.2f}, {v.high:+.2f}]"
    no_lsq = paired_comparisons(records, ("t",), (3,), (0, 1, 2), (2,))        # no W3A3 model: no LSQ pair
    assert [c["this method minus"] for c in no_lsq] == [FROM_FP]


def test_fp_curves_and_every_arms_convergence_check_from_the_same_seed():
    result = _result()
    curves = fp_curves(result)
    assert [(c["seed"], c["multiple"]) for c in curves] == [(0, 1), (1, 1), (2, 1), (0, 2)]
    assert curves[0]["passes"] == [2, 4, 6, 8] and curves[-1]["passes"] == [2 * i for i in range(1, 9)]
    table = convergence_table(result, flat_points=1.0)
    assert list(table.arm) == ["FP", "LSQ W3A3", "this method", FROM_FP]              # every arm
    assert list(table["heldout top-1 at budget"]) == [90.0, 80.0, 80.0, 80.0]         # its seed-0 selection score
    assert list(table["heldout top-1 longer"]) == [93.0, 80.0, 84.0, 80.0]
    assert list(table["steps at budget"]) == [8, 8, 2, 2] and list(table["steps longer"]) == [16, 16, 4, 4]
    assert (table["passes at budget"] == 8).all() and (table["passes longer"] == 16).all()
    assert list(table.lr) == [0.05, 0.03, 0.01, 0.02]                                 # each at its own rate
    gain = paired_verdict(_heldout(93).numpy(), _heldout(90).numpy())
    assert table["gain (points)"].iloc[0] == pytest.approx(3.0) and table["gain SE"].iloc[0] == pytest.approx(
        gain.se_images)
    # a supernet's gain is in the score its rate was chosen by (its uniform configurations), not its max path's
    ours = paired_verdict(_heldout(84).float().numpy(), _heldout(80).float().numpy())
    assert table["gain (points)"].iloc[2] == pytest.approx(4.0) and table["gain SE"].iloc[2] == pytest.approx(
        ours.se_images)
    assert list(table.flattened) == [False, True, False, True]
    assert convergence_table(result, flat_points=5.0).flattened.all()


def test_transfer_metrics_record_equal_passes_and_are_strict_json(tmp_path):
    result = _result()
    t5, comparisons = t5_table(result.records), paired_comparisons(result.records, ("t",), (3, 2.9), (0, 1, 2), (3,))
    spec = transfer_setup(**_sections(), device=torch.device("cpu")).spec
    tr = TransferConfig(seeds=(0, 1, 2), levels=(3, 2.9), baseline_bits=(3,))
    m = transfer_metrics(profile="tiny", seed=0, spec=spec, device=torch.device("cpu"), transfer=tr, result=result,
                         t5=t5, comparisons=comparisons, convergence=convergence_table(result, 1.0))
    assert list(m) == ["profile", "seed", "model", "width_mult", "device", "cpu_capability", "stage_seconds",
                       "transfer", "budget", "passes", "lr_grid", "convergence", "t5", "comparisons",
                       "comparisons_note", "collapsed", "runs"]
    budget = m["budget"]["t"]
    assert budget["equal_passes"] and budget["passes"] == 8
    assert {a: (v["steps"], v["passes"]) for a, v in budget["arms"].items()} == {
        "FP": (8, 8), "LSQ W3A3": (8, 8), "this method": (2, 8), FROM_FP: (2, 8)}
    assert m["passes"] == {"grid": 12, "compared runs": 3 * 4 * 8, "longer runs": 4 * 16, "total": 12 + 96 + 64}
    assert m["lr_grid"]["chosen"] == {"t": RATES}
    assert [(c["arm"], c["grid"], c["chosen"], c["inside"], c["widenings"]) for c in m["lr_grid"]["choices"]] == [
        ("FP", [0.02, 0.05, 0.1], 0.05, True, 1), ("LSQ W3A3", [0.01, 0.03, 0.06], 0.03, True, 1),
        ("this method", [0.01, 0.03], 0.01, False, 0), (FROM_FP, [0.01, 0.02, 0.04], 0.02, True, 0)]
    assert [r["round"] for r in m["lr_grid"]["rows"]] == [0, 0, 1]
    assert [c["seed"] for c in m["collapsed"]] == [2] and m["collapsed"][0]["arm"] == FROM_FP
    rows = m["comparisons"]
    assert rows[0]["verdict"]["word"] in ("holds", "inconclusive", "reversed here") and rows[0]["verdict"]["n"] == 3
    assert rows[0]["verdict"]["expected"] == 1 and rows[1]["verdict"]["expected"] == 0
    assert m["comparisons_note"].startswith("3 comparisons")
    assert m["t5"][0]["G-BitOPs"] is None                                  # NaN written as null
    assert m["stage_seconds"] == 12.3 and len(m["runs"]) == len(result.records)
    assert not {"preds", "labels", "heldout_correct", "selection_correct", "curve"} & set(m["runs"][0])
    assert m["runs"][2]["selection top-1"] == 80.0 and m["runs"][2]["steps"] == 2
    assert m["runs"][0]["test_acc"] == 1.0 and m["runs"][0]["passes"] == 8
    json.dumps(m, allow_nan=False)                                         # strict: no NaN token anywhere
    write_json(m, tmp_path / "transfer.json")
    back = json.loads((tmp_path / "transfer.json").read_text())
    assert back["budget"]["t"]["arms"]["this method"]["passes"] == 8
    assert [(r["arm"], r["flattened"]) for r in back["convergence"]["rows"]] == [
        ("FP", False), ("LSQ W3A3", True), ("this method", False), (FROM_FP, True)]
    assert len(back["convergence"]["fp_curves"]) == 4


def test_transfer_findings_state_budget_rates_convergence_verdicts_and_collapses():
    result = _result()
    tr = TransferConfig(seeds=(0, 1, 2), levels=(3,), baseline_bits=(3,), fp_lrs=(0.02, 0.05), lsq_lrs=(0.01, 0.03),
                        supernet_lrs=(0.01, 0.03), max_widenings=1)
    comparisons = paired_comparisons(result.records, ("t",), (3,), (0, 1, 2), (3,))
    lines = transfer_findings(result, tr, t5_table(result.records), comparisons, convergence_table(result, 1.0))
    assert lines[0] == ("t: every arm made 8 forward/backward passes over the same 2 batches per epoch (FP and LSQ: "
                        "4 epochs, 8 steps; the supernets: 1 epochs, 2 steps of 4 passes)")
    assert lines[1] == "the stage made 172 passes: grid 12 (3 runs), compared runs 96, longer runs 64"
    assert lines[2] == ("t: every arm's rate chosen on held-out training images from a grid of its own (seed 100, 50% "
                        "of the training images, 2 widenings by x2): FP 0.05 of [0.02, 0.05, 0.1], LSQ W3A3 0.03 of "
                        "[0.01, 0.03, 0.06], this method 0.01 of [0.01, 0.03], supernet from the FP model (no one-shot "
                        "pre-training) 0.02 of [0.01, 0.02, 0.04]; at the grid's edge (at most 1 widening allowed): "
                        "this method after 0 widenings")
    assert "FP 90.00% -> 93.00% (+3.00 ± 1.71); LSQ W3A3 80.00% -> 80.00% (+0.00 ± 0.00); this method" in lines[3]
    assert lines[3].endswith("still rising (a gain under 1 point is flat) for FP, this method: the budget is short of "
                             "their convergence")
    assert lines[4] == (f"t: this method (no retraining) minus LSQ W3A3 at level 3: {comparisons[0]['verdict'].text()} "
                        "(per seed +25.00 / +50.00 / +50.00)")
    assert "1 collapsed run(s) included" in lines[5]
    assert lines[6].startswith("comparisons: 2 comparisons")
    assert lines[7].startswith("1 of 12 runs collapsed, kept in every mean and verdict: t supernet from the FP model "
                               "(no one-shot pre-training) seed 2 (held-out top-1 50.00%")
    assert lines[8] == "t: the FP model fine-tuned reaches 91.67% on the test images (per seed 100.00 / 75.00 / 100.00)"
    healthy = [dict(r, collapsed=False, collapse=None) for r in result.records]
    assert "none of the 12 runs collapsed" in transfer_findings(_result(healthy), tr, t5_table(healthy), [],
                                                                convergence_table(result, 1.0))[-2]


def test_transfer_figure_front_with_seed_dots_and_collapses_above_the_fp_curves():
    import matplotlib.pyplot as plt

    result = _result()
    curves = fp_curves(result) + convergence_curves(result)
    assert [(c["arm"], c["passes"], c["heldout top-1"]) for c in curves[4:]] == [
        ("LSQ W3A3", [8, 16], [80.0, 80.0]), ("this method", [8, 16], [80.0, 84.0]), (FROM_FP, [8, 16], [80.0, 80.0])]
    fig = transfer_figure(result.records, curves, result.budgets, ["t"], "title")
    front, curve = fig.axes
    assert front.get_title() == "t" and curve.get_title().startswith("t: convergence")
    assert [t.get_text() for t in front.get_legend().get_texts()] == [
        "LSQ W3A3", "this method, no retraining", f"{FROM_FP}, no retraining", "FP fine-tuned"]
    assert front.lines[-1].get_ydata()[0] == pytest.approx(275 / 3)
    crosses = [c for c in front.collections if c.get_offsets().shape[0] == 2]      # seed dots: 3, 6 and 4 per arm
    assert len(crosses) == 1 and list(crosses[0].get_offsets()[:, 1]) == [0.0, 0.0]   # the collapsed seed, both levels
    assert len(curve.lines) == 8 and curve.lines[-1].get_xdata()[0] == 8      # 4 FP curves, 3 arms, the budget
    assert curve.get_legend().get_texts()[4].get_text() == "LSQ W3A3: 1x and 2x, seed 0"
    plt.close(fig)
    fig = transfer_figure(result.records, curves, result.budgets, ["t"], "title", names={"t": "Target-T"})
    assert [ax.get_title() for ax in fig.axes] == ["Target-T", "Target-T: convergence"]
    plt.close(fig)


# --- the transfer stage's folder: plain data, no wall times, read back exactly ----------------------------------

def _assert_same_result(got: TransferResult, want: TransferResult) -> None:
    """Equal field by field: the same rows with their keys in the same order, every tensor equal with its dtype,
    every float exactly (NaN where both are NaN), the budgets and rates in the same order."""
    def same(a, b):
        if isinstance(b, torch.Tensor):
            return isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        if isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and math.isnan(a)
        return type(a) is type(b) and a == b

    for section in ("records", "grid", "choices", "longer"):
        rows, expected = getattr(got, section), getattr(want, section)
        assert len(rows) == len(expected), section
        for row, exp in zip(rows, expected):
            assert list(row) == list(exp), section
            bad = [k for k in exp if not same(row[k], exp[k])]
            assert not bad, f"{section}: {bad}"
    assert list(got.budgets.items()) == list(want.budgets.items())
    assert [(t, list(r.items())) for t, r in got.lrs.items()] == [(t, list(r.items())) for t, r in want.lrs.items()]
    assert same(got.seconds, want.seconds)


def _json_keys(obj) -> set[str]:
    if isinstance(obj, dict):
        return set(obj) | {k for v in obj.values() for k in _json_keys(v)}
    if isinstance(obj, list):
        return {k for v in obj for k in _json_keys(v)}
    return set()


def test_saved_result_reads_back_exactly_with_the_stage_records_wall_times(tmp_path):
    result = _result()
    timings = save_transfer(result, tmp_path / "out")
    write_stage_record("transfer", 99.0, root=tmp_path / "stages", timings=timings)
    back = load_transfer(tmp_path / "out", stages=tmp_path / "stages")
    _assert_same_result(back, result)
    labels = [r["labels"] for r in back.records]
    assert all(x is labels[0] for x in labels)                        # a target's labels: one tensor, as trained
    # the same result gives the same bytes (no time stamp in the archive either)
    save_transfer(result, tmp_path / "again")
    assert all((tmp_path / "out" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
               for f in ("result.json", "predictions.npz"))
    # without the stage record: everything but the wall times, which are NaN
    bare = load_transfer(tmp_path / "out", stages=tmp_path / "none")
    assert math.isnan(bare.seconds) and all(math.isnan(r["tune_seconds"]) for r in bare.records)
    timeless = lambda res: [{k: v for k, v in r.items() if k not in ("tune_seconds", "search_seconds")}
                            for r in res.records]
    _assert_same_result(dataclasses.replace(bare, records=timeless(bare), seconds=0.0),
                        dataclasses.replace(result, records=timeless(result), seconds=0.0))
    assert math.isnan(t5_table(bare.records)["fine-tune s (per run)"].iloc[0])


def test_the_stage_folder_holds_no_wall_time_and_the_stage_record_holds_them(tmp_path):
    result = _result()
    timings = save_transfer(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.npz", "result.json"]
    keys = _json_keys(json.loads((tmp_path / "out" / "result.json").read_text()))
    assert "preds" in keys and not [k for k in keys if "seconds" in k or "time" in k]
    with np.load(tmp_path / "out" / "predictions.npz", allow_pickle=False) as npz:
        assert not [n for n in npz.files if "seconds" in n or "time" in n]
        # the supernets' selection score per image is a share of their uniform configurations (float32); FP's and
        # LSQ's is their held-out correctness, one tensor stored once
        assert {npz[n].dtype for n in npz.files} == {np.dtype(np.int16), np.dtype(bool), np.dtype(np.float32)}
        assert not [n for n in npz.files if n.startswith("records_0_selection")]
    assert timings["run_seconds"] == 12.345
    assert timings["runs"][0] == {"target": "t", "seed": 0, "arm": "FP", "level": 32, "tune_seconds": 10.0}
    assert timings["runs"][2] == {"target": "t", "seed": 0, "arm": "this method", "level": 3, "tune_seconds": 10.0,
                                  "search_seconds": 2.0}
    # the metrics take the wall times from the result and the CPU kind of the machine that trained
    t5, comparisons = t5_table(result.records), paired_comparisons(result.records, ("t",), (3,), (0, 1, 2), (3,))
    spec = transfer_setup(**_sections(), device=torch.device("cpu")).spec
    m = transfer_metrics(profile="tiny", seed=0, spec=spec, device="cpu", transfer=TransferConfig(), result=result,
                         t5=t5, comparisons=comparisons, convergence=convergence_table(result, 1.0),
                         stage={"cpu_capability": "AVX512"})
    assert m["cpu_capability"] == "AVX512" and m["stage_seconds"] == 12.3 and m["runs"][0]["tune_seconds"] == 10.0


def test_loading_a_missing_or_damaged_folder_says_which_file_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"result.json is missing.*dvc pull") as exc:
        load_transfer(tmp_path / "nowhere")
    assert "\n" not in str(exc.value)
    save_transfer(_result(), tmp_path / "out")
    (tmp_path / "out" / "predictions.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=r"predictions.npz is damaged.*dvc pull"):
        load_transfer(tmp_path / "out", stages=tmp_path)
    (tmp_path / "out" / "predictions.npz").unlink()
    with pytest.raises(CheckpointError, match=r"predictions.npz is missing.*dvc pull"):
        load_transfer(tmp_path / "out", stages=tmp_path)
    save_transfer(_result(), tmp_path / "out")
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    del doc["records"][0]["arm"]
    write_json(doc, tmp_path / "out" / "result.json")
    with pytest.raises(CheckpointError, match=r"result.json is damaged or not a transfer result.*dvc pull"):
        load_transfer(tmp_path / "out", stages=tmp_path)
    (tmp_path / "out" / "result.json").write_text('{"records": [')
    with pytest.raises(CheckpointError, match=r"result.json is damaged \(JSONDecodeError\)"):
        load_transfer(tmp_path / "out", stages=tmp_path)


def test_command_line_writes_the_folder_whole_and_the_wall_times_apart(tmp_path, monkeypatch):
    import mpq.studies.transfer as transfer

    monkeypatch.chdir(tmp_path)
    shutil.copy(Path(__file__).resolve().parent.parent / "params.yaml", tmp_path / "params.yaml")
    calls = []

    def fake_run(setup, seed, *, checkpoints, work):
        calls.append((setup.transfer.targets, seed, checkpoints, Path(work)))
        Path(work).mkdir(parents=True, exist_ok=True)
        for tag in ("transferred", "from-fp", "transferred_x2", "from-fp_x2"):   # the longer runs' too
            (Path(work) / f"resnet20_t_{tag}_seed0.pt").write_bytes(b"weights")
        return _result()

    monkeypatch.setattr(transfer, "run_transfer", fake_run)
    assert transfer.main(["--out", "checkpoints/transfer"]) == 0
    params = load_params("params.yaml")
    assert calls == [(tuple(params["transfer"]["targets"]), params["seed"], "checkpoints",
                      Path("checkpoints/.transfer.partial"))]
    out = Path("checkpoints/transfer")
    assert sorted(p.name for p in out.iterdir()) == ["predictions.npz", "resnet20_t_transferred_seed0.pt", "result.json"]
    assert sorted(p.name for p in Path("checkpoints").iterdir()) == ["transfer"]        # no partial or old folder
    record = read_stage_record("transfer")
    assert record["stage"] == "transfer" and record["timings"]["run_seconds"] == 12.345 and "cpu_capability" in record
    _assert_same_result(load_transfer(), _result())
    assert transfer.main(["--out", "checkpoints/transfer", "--stages", "elsewhere"]) == 0   # an earlier output is replaced
    assert read_stage_record("transfer", "elsewhere")["timings"] == record["timings"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    assert transfer.main(["--out", str(foreign)]) == 2 and (foreign / "notes.txt").exists()


# --- T5: the set-up and the runs, on a tiny image folder ------------------------------------------------------

def _sections(**transfer):
    """The params sections notebook 06 reads (params.yaml), with resnet20 at width 0.25 and ``transfer`` overrides."""
    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    keys = ("data", "models", "model_bits", "fp", "oneshot", "evaluation", "baselines", "search", "transfer")
    sections = {k: params[k] for k in keys}
    sections["models"] = {"resnet20": {"width_mult": 0.25}}
    sections["transfer"] = {**params["transfer"], "model": "resnet20", **transfer}
    return sections


def test_transfer_setup_reads_the_sections_and_refuses_what_no_stage_trains():
    sections = _sections(ema_decay=0.8, step_lr_ratio=0.1)
    setup = transfer_setup(**sections, device=torch.device("cpu"))
    assert (setup.spec.name, setup.spec.width_mult, tuple(setup.input_size)) == ("resnet20", 0.25, (1, 28, 28))
    tune = setup.tune
    assert (tune.ema_decay, tune.train_size) == (0.8, None)
    assert tune.num_random_paths == setup.oneshot.num_random_paths and tune.w_bit_choices == setup.oneshot.w_bit_choices
    from mpq.studies.transfer import recipe

    lsq = recipe(setup, "LSQ W3A3", 0.03, 8)
    assert (lsq.epochs, lsq.lr, lsq.num_random_paths, lsq.w_bit_choices) == (8, 0.03, 0, (3,))
    ours = recipe(setup, "this method", 0.02, 2)
    assert (ours.epochs, ours.lr, ours.num_random_paths) == (2, 0.02, setup.oneshot.num_random_paths)
    assert (lsq.step_lr, ours.step_lr) == (pytest.approx(0.003), pytest.approx(0.002))     # rate x step_lr_ratio
    with pytest.raises(ValueError, match=r"baseline_bits \[3\] have no LSQ model"):
        transfer_setup(**{**sections, "baselines": {**sections["baselines"], "levels": [4]},
                          "transfer": {**sections["transfer"], "baseline_bits": [3, 4]}}, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="is not in the models section"):
        transfer_setup(**{**sections, "transfer": {**sections["transfer"], "model": "mobilenetv2_28"}},
                       device=torch.device("cpu"))


@pytest.mark.timeout(480)       # 230 s here at a load of 7 on 2 cores (four helpers at once)
def test_run_transfer_tiny_folder_equal_passes_heldout_rates_every_arm(tmp_path, monkeypatch):
    import mpq.studies.transfer as transfer

    root = _image_folder(tmp_path / "pets")            # 24 images: train 10, score 4, calib 4, test 6
    sections = _sections(targets=["folder"], root=str(root), seeds=[0], budget_passes=2, fp_lrs=[0.05, 0.1],
                         lsq_lrs=[0.01], supernet_lrs=[0.01], max_widenings=0, grid_seed=5, grid_images=0.5,
                         curve_multiple=2,
                         train_size=None, score_size=4, calib_size=4, test_fraction=0.25, levels=[3],
                         baseline_bits=[3])
    # one batch per epoch (10 training images, batches of 8), two candidates per layer (none frozen), one random
    # path (two passes per supernet step): quick
    sections["data"] = {**sections["data"], "batch_size": 8}
    sections["oneshot"] = {**sections["oneshot"], "w_bit_choices": [3, 4], "a_bit_choices": [3, 4],
                           "num_random_paths": 1, "scheduler": False}
    sections["baselines"] = {**sections["baselines"], "levels": [3]}
    sections["search"] = {**sections["search"], "levels": [3], "start_bits": 3}
    setup = transfer_setup(**sections, device=torch.device("cpu"))
    ckpt = tmp_path / "checkpoints"
    # notebook 01's FP model and notebook 02's supernet, stand-ins: a 10-class model, a one-step one-shot run
    fp_model = create_model("resnet20", width_mult=0.25)
    save_checkpoint({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": fp_model.state_dict()},
                    ckpt / "fp" / "resnet20.pt")
    splits = load_target("folder", setup.transfer, 0)
    net = build_supernet(create_model("resnet20", width_mult=0.25), setup.oneshot.supernet_spec(), splits.calib,
                         setup.input_size)
    train_oneshot(net, splits.train.subset(torch.arange(8)), dataclasses.replace(setup.oneshot, epochs=1),
                  batch_size=8, pad=2, flip=False, seed=0, device=torch.device("cpu"),
                  checkpoint=ckpt / "supernet" / "resnet20.pt", progress=False,
                  meta={"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "data": {}})
    (ckpt / "baselines").mkdir()
    shutil.copy(ckpt / "supernet" / "resnet20.pt", ckpt / "baselines" / "resnet20_w3a3.pt")   # any supernet loads
    grid_calls = []
    real_grid = transfer.lr_grid

    def spy(setup, target, train, heldout, calib, *args, **kwargs):
        grid_calls.append((train, heldout, calib))
        return real_grid(setup, target, train, heldout, calib, *args, **kwargs)

    monkeypatch.setattr(transfer, "lr_grid", spy)
    result = run_transfer(setup, 0, checkpoints=str(ckpt))
    records = result.records
    assert [(r["target"], r["seed"], r["arm"], r["level"]) for r in records] == [
        ("folder", 0, "FP", 32), ("folder", 0, "LSQ W3A3", 3), ("folder", 0, "this method", 3),
        ("folder", 0, FROM_FP, 3)]
    assert result.seconds > 0 and all(r["labels"] is records[0]["labels"] and r["preds"].shape == (6,) for r in records)
    assert records[0]["gbitops"] is None and records[1]["gbitops"] > 0
    # equal passes: a budget of 2 passes is one supernet epoch (one step of 2 passes), two single-path steps
    budget = result.budgets["folder"]
    assert (budget.steps_per_epoch, budget.paths, budget.supernet_epochs, budget.passes) == (1, 2, 1, 2)
    assert [(r["epochs"], r["steps"], r["passes"]) for r in records] == [(2, 2, 2), (2, 2, 2), (1, 1, 2), (1, 1, 2)]
    # the rates: chosen on the held-out scoring images (the test split never reaches the grid), at the grid seed
    ((train, heldout, calib),) = grid_calls
    assert torch.equal(heldout.images, splits.score.images) and torch.equal(calib.images, splits.calib.images)
    assert torch.equal(train.images, splits.train.images) and heldout.images.shape != splits.test.images.shape
    arms = ["FP", "LSQ W3A3", "this method", FROM_FP]
    assert [(r["arm"], r["lr"], r["seed"], r["round"]) for r in result.grid] == [
        ("FP", 0.05, 5, 0), ("FP", 0.1, 5, 0), ("LSQ W3A3", 0.01, 5, 0), ("this method", 0.01, 5, 0),
        (FROM_FP, 0.01, 5, 0)]                                                      # every arm its own grid
    assert all(r["train images"] == 8 and r["passes"] == 2 for r in result.grid)          # 8 of 10 images: one batch
    assert [(r["arm"], r["steps"]) for r in result.grid] == list(zip(arms[:1] + arms, (2, 2, 2, 1, 1)))
    assert [c["arm"] for c in result.choices] == arms
    for c in result.choices:        # no widening allowed here: a choice at an edge is recorded as such
        tried = [r for r in result.grid if r["arm"] == c["arm"]]
        chosen = [r for r in tried if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["heldout top-1"] == max(r["heldout top-1"] for r in tried)
        assert c["chosen"] == chosen[0]["lr"] == result.lrs["folder"][c["arm"]] and c["widenings"] == 0
        assert c["grid"] == [r["lr"] for r in tried] and c["inside"] is False
    assert [r["lr"] for r in records] == [result.lrs["folder"][a] for a in arms]
    # health of every run; the FP curve and the longer FP run
    # (4 held-out images: whether a run is flagged depends on a few predictions, which the thread count can
    # change; every flag must come with its reason)
    assert all(r["losses finite"] and 0 <= r["heldout top-1"] <= 100 for r in records)
    assert all(r["collapsed"] is (r["collapse"] is not None) for r in records)
    assert len(records[0]["curve"]) == 2 and records[0]["heldout_correct"].shape == (4,)
    # every arm's convergence check: twice the passes at its chosen rate and the first seed, its steps beside them
    assert [(r["arm"], r["seed"], r["lr"], r["epochs"], r["steps"], r["passes"]) for r in result.longer] == [
        (a, 0, result.lrs["folder"][a], e, e, 4) for a, e in zip(arms, (4, 4, 2, 2))]
    assert len(result.longer[0]["curve"]) == 4 and "curve" not in result.longer[1]
    assert all(r["selection_correct"].shape == (4,) for r in result.longer + records)
    assert records[2]["selection_correct"].dtype == torch.float32          # a share of the uniform configurations
    convergence = convergence_table(result, 1.0)
    assert list(convergence.arm) == arms and list(convergence["steps longer"]) == [4, 4, 2, 2]
    assert list(convergence["heldout top-1 at budget"]) == [r["selection top-1"] for r in records]
    assert stage_passes(result) == {"grid": 10, "compared runs": 8, "longer runs": 16, "total": 34}
    ours = records[2]
    assert list(ours)[-5:] == ["search_seconds", "found_level", "bit_cfg", "collapsed", "collapse"]
    assert ours["found_level"] <= 3 + 1e-9
    assert {p.name for p in (ckpt / "transfer").iterdir()} == {
        "resnet20_folder_transferred_seed0.pt", "resnet20_folder_from-fp_seed0.pt",
        "resnet20_folder_transferred_x2_seed0.pt", "resnet20_folder_from-fp_x2_seed0.pt"}
    # the FP arm by hand: seed, new classifier, fine-tuning with the same seed, rate and epochs: the same predictions
    torch.manual_seed(0)
    model = fresh_float_model(load_fp_model(str(ckpt / "fp" / "resnet20.pt")), 2)
    train_fp(model, splits.train, splits.score, epochs=2, batch_size=8, lr=result.lrs["folder"]["FP"],
             momentum=setup.fp.momentum, weight_decay=setup.fp.weight_decay, warmup_epochs=setup.fp.warmup_epochs,
             label_smoothing=setup.fp.label_smoothing, pad=setup.data.pad, flip=False, seed=0,
             device=torch.device("cpu"), progress=False)
    assert torch.equal(predictions(model, splits.test), records[0]["preds"])
    # the stage's folder holds this result exactly (real predictions, health, configurations), wall times apart
    write_stage_record("transfer", 1.0, root=tmp_path / "stages", timings=save_transfer(result, tmp_path / "out"))
    _assert_same_result(load_transfer(tmp_path / "out", stages=tmp_path / "stages"), result)
    comparisons = paired_comparisons(records, ("folder",), (3,), (0,), (3,))
    t5 = t5_table(records)
    assert len(t5) == 4 and len(comparisons) == 2 and list(t5["optimizer steps"]) == [2, 2, 1, 1]
    assert list(t5.method)[-1] == "supernet from the FP model (no one-shot pre-training), no retraining"
    m = transfer_metrics(profile="tiny", seed=0, spec=setup.spec, device="cpu", transfer=setup.transfer, result=result,
                         t5=t5_table(records), comparisons=comparisons, convergence=convergence_table(result, 1.0))
    assert m["budget"]["folder"]["equal_passes"] and json.dumps(m, allow_nan=False)
    # the command line finds a configuration for another budget on the user's folder, and asks for the folder
    from mpq.__main__ import main

    ours_ckpt = ckpt / "transfer" / "resnet20_folder_transferred_seed0.pt"
    out = tmp_path / "folder_cfg.json"
    assert main(["search", str(ours_ckpt), "--level", "3.5", "--data-root", str(root), "--evaluate",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["level"] <= 3.5 + 1e-9
    assert main(["search", str(ours_ckpt), "--level", "3.5"]) == 2
