"""Nothing silently wrong, second round (issue 40): each class of silent error closed where it starts, one test
per example of the issue. A request is answered as asked or refused naming what is reachable; non-finite
weights are refused wherever weights are loaded, saved or exported; the files of an artefact are pinned to one
another by digest; parameter files are read strictly; checkpoints with options this version does not know are
refused naming the version that wrote them; images are converted by bit depth and mode; outputs are checked
whole before the work; files get the user's umask and no temporary file outlives a run; FP training on fewer
images than a batch is one line. ``tests/test_fuzz.py`` keeps the classes closed over random inputs."""
from __future__ import annotations

import json

import pytest

from mpq.__main__ import main

pytestmark = pytest.mark.timeout(90)


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# --- 1. a request answered as asked, or refused naming what is reachable -----------------------------------

def test_a_level_above_the_walks_start_is_refused_naming_the_reachable_levels(trained, tmp_path, capsys):
    """`search --level 6` returned uniform W5A5 (level 5) with exit 0: the walk starts there and moves down."""
    _, path = trained
    assert main(["search", str(path), "--level", "6"]) == 2
    err = _one_line(capsys, "outside this supernet's reachable range", "to 5.00: the greedy walk starts at uniform "
                    "W5A5 and moves down")
    assert "6.00" not in err and not (tmp_path / "cfg.json").exists()


def test_more_images_than_there_are_is_refused_not_capped(trained, tmp_path, capsys):
    """`--test-size` and `--agreement-images` beyond the test set were capped silently."""
    _, path = trained
    assert main(["search", str(path), "--level", "4", "--test-size", "10001", "--evaluate"]) == 2
    _one_line(capsys, "--test-size 10001: the test set has 10000 images; use at most 10000")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"bit_cfg": {n: [4, 4] for n in trained[0].searchable}}))
    assert main(["evaluate", str(path), "--config", str(cfg), "--test-size", "16", "--agreement-images", "17"]) == 2
    _one_line(capsys, "--agreement-images 17: the test set has 16 images; use at most 16")
