"""Fuzz harness (issue 40): random bad input to the command lines (`search`, `export`, `evaluate`), to an export
folder's files, to a checkpoint's dictionary and to a params file. The property, for every example: the run
either succeeds with a result that is right for its input, or exits with status 2 and one line naming the
problem; never a traceback (an exception other than the exit fails the test with it), never exit 0 with a
wrong result, never a temporary file left behind.

The command lines run in-process (``main(argv)``, stderr captured), so many examples fit. The search's scores
come from a cheap function of the configuration (``toy_scores``): loading, checks, budget, the greedy walk and
the output are the command's own; what the scores are is tested in tests/test_search.py and test_evaluation.py.
Examples are bounded (``max_examples``) and derandomized, so the suite runs the same examples each time."""
from __future__ import annotations

import json
import math
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from mpq.__main__ import main
from mpq.config import from_dict, load_params, model_specs
from mpq.method.cost import bitops, level_bitops
from mpq.search.evaluation import search_space
from mpq.search.greedy import greedy_reachable
from mpq.search.space import cfg_from_json
from mpq.training.checkpoint import current_umask
from mpq.training.oneshot import checkpoint_candidates
from test_inputs import LOADERS, _sane           # the first round's section loaders and what an accepted one satisfies

onnxruntime = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent
# derandomized: the same examples every run; no shrinking: an example takes seconds, and the one that failed is
# printed as drawn
FUZZ = settings(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
TEMPORARY = re.compile(r"^\..*\.tmp(\..*)?$")          # what an atomic write leaves when it is killed
SEARCH = ["--level", "3", "--score-size", "8"]          # the search each changed checkpoint gets
ANSWER = ("bit_cfg", "gbitops", "target_gbitops")        # what it answers, compared with the intact checkpoint's
EVALUATE = ["--test-size", "8"]                          # the evaluation each damaged export folder gets


# --- running a command and judging its ending ---------------------------------------------------------------

def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``python -m mpq ARGV`` in-process: exit status, stdout, stderr. Any other exception is a traceback: it
    propagates and fails the test."""
    try:
        code = main(argv)
    except SystemExit as exc:          # argparse's refusals
        code = exc.code
    out, err = capsys.readouterr()
    reason = re.sub(r"/\S*", "PATH", err.strip().partition(": ")[2])[:48] if code == 2 else ""
    event(f"{argv[0]}: exit {code}" + (f" ({reason})" if reason else ""))
    return code, out, err


def refused(code: int, err: str, *names: str) -> str:
    """Exit status 2 and one line, ``error: ...``, naming one of ``names`` (a file, a flag) where given."""
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    if names:
        assert any(name in lines[0] for name in names), (names, err)
    return lines[0]


def no_temporaries(*folders: Path) -> None:
    """No hidden temporary file or staging folder left anywhere under ``folders``."""
    for folder in folders:
        for path in Path(folder).rglob(".*"):
            assert not TEMPORARY.match(path.name), path


def toy_score(bit_cfg) -> float:
    """A cheap stand-in for the scorer: fewer bits, more error, earlier layers more sensitive."""
    return sum((1 + i / 100) / (w * a) for i, (w, a) in enumerate(bit_cfg.values()))


@pytest.fixture
def toy_scores(monkeypatch):
    import mpq.search.evaluation as evaluation

    monkeypatch.setattr(evaluation, "make_scorer", lambda supernet, data, metric="loss", **kw: toy_score)


class World(dict):
    """What the examples point at; a short repr, so that a failing example's report stays readable."""

    def __repr__(self) -> str:
        return "world"


@pytest.fixture(scope="module")
def world(trained, exports, tmp_path_factory):
    """What the examples point at: the tiny supernet's checkpoint, its search space and cost table, its exports, a
    configuration file, and files of the wrong kind."""
    supernet, ckpt = trained
    root = tmp_path_factory.mktemp("world")
    fp = root / "fp.pt"
    torch.save({"model": "resnet20", "width_mult": 0.25, "num_classes": 10, "state_dict": {}}, fp)
    text = root / "notes.txt"
    text.write_text("not a checkpoint\n")
    cfg4 = root / "w4a4.json"
    cfg4.write_text(json.dumps({"bit_cfg": {n: [4, 4] for n in supernet.searchable}}))
    other = root / "other"
    other.mkdir()
    (other / "mine.txt").write_text("someone's file\n")
    base = torch.load(ckpt, weights_only=True)                 # the checkpoint's dictionary, and its search
    with pytest.MonkeyPatch.context() as patch:
        import mpq.search.evaluation as evaluation

        patch.setattr(evaluation, "make_scorer", lambda supernet, data, metric="loss", **kw: toy_score)
        assert main(["search", str(ckpt), *SEARCH, "--out", str(root / "intact.json")]) == 0
    answer = {k: v for k, v in json.loads((root / "intact.json").read_text()).items() if k in ANSWER}
    assert main(["evaluate", str(exports[4]), *EVALUATE, "--out", str(root / "evaluated.json")]) == 0
    evaluated = json.loads((root / "evaluated.json").read_text())
    return World(supernet=supernet, ckpt=ckpt, bytes=ckpt.read_bytes(), table=supernet.cost_table,
                 space=search_space(supernet, checkpoint_candidates(ckpt, supernet)), intact=(base, answer),
                 exports=exports, evaluated=evaluated, fp=fp, text=text, cfg4=cfg4, other=other, umask=current_umask())


def _path(kind: str, world: dict, work: Path) -> str:
    """A path of a given kind for the examples to point a positional argument, ``--config`` or ``--out`` at."""
    paths = {"ckpt": world["ckpt"], "fp": world["fp"], "text": world["text"], "export": world["exports"][4],
             "export3": world["exports"][3], "cfg4": world["cfg4"], "other": world["other"], "missing": work / "nope.pt",
             "folder": work, "new": work / "out.json", "nested": work / "a" / "b" / "out.json",
             "long": work / ("n" * 256), "fits": work / ("f" * 250), "under_file": world["text"] / "out.json",
             "slash": f"{work / 'dir'}/", "new_folder": work / "deployed"}
    return str(paths[kind])


# --- the command lines -----------------------------------------------------------------------------------

# per command: flag -> (values that fit, mistakes); None: a switch. An example makes 0, 1 or 2 mistakes.
FLAGS = {
    "search": {"--score-size": (["8", "1", "128"], ["129", "0", "-3", "x"]),
               "--calib-size": (["16", "128"], ["129", "0"]),
               "--test-size": (["16", "64"], ["10001", "0", "-1"]),
               "--dataset": (["fashion_mnist"], ["mnist5k", "nope"]),
               "--seed": (["0"], ["1", "x"]),
               "--metric": (["loss", "error"], ["top5"]),
               "--alpha": (["1.5", "0", "3"], ["-1", "nan", "x"]),
               "--evaluate": None, "--allow-unfinished": None,
               "--out": (["new", "nested", "fits"], ["folder", "ckpt", "long", "under_file", "slash"]),
               "--data-root": ([], ["folder"]), "--frobnicate": ([], [True])},
    "export": {"--allow-unfinished": None, "--data-root": ([], ["folder"]), "--test-size": ([], ["8"])},
    "evaluate": {"--agreement-images": (["4", "1"], ["0", "17", "x"]),
                 "--dataset": (["fashion_mnist", "mnist5k"], ["nope"]),
                 "--out": (["new"], ["folder", "ckpt", "long", "export"]), "--allow-unfinished": None,
                 "--data-root": ([], ["folder"])},
}
SOURCES = {"search": (["ckpt"], ["fp", "text", "missing", "folder", "export"]),
           "export": (["ckpt"], ["fp", "text", "missing", "export"]),
           "evaluate": (["export", "export3", "export", "export3", "ckpt+config"],
                        ["ckpt", "missing", "other", "text", "export+config"])}
REQUIRED = {   # what each command must be given: (values that fit, mistakes); None: left out
    "search": {"budget": (["--level 2.5", "--level 3", "--level 4.2", "--level 5", "--gbitops 0.02",
                           "--gbitops 0.03"],
                          ["--level 5.01", "--level 6", "--level 2", "--level 1.5", "--level 0", "--level -1",
                           "--level nan", "--level inf", "--level x", "--gbitops 0", "--gbitops 1e9", "--gbitops nan",
                           "--level 3 --gbitops 0.02", ""])},
    "export": {"--config": (["cfg4", "mixed"], ["text", "missing", "ckpt", "bad", None]),
               "--out": (["new_folder", "export"], ["other", "text", "ckpt", "long", None])},
    "evaluate": {"--test-size": (["8", "1", "16"], ["0", "-2", "10001", "x"])},
}


@st.composite
def argv_for(draw, command: str) -> tuple[list, dict]:
    """A command line as ``[token or ("path", kind)]``, and its options as a dict: every required argument and a
    few optional flags, with 0, 1 or 2 of them mistaken (a required flag left out, a value out of range or of the
    wrong kind, a path of the wrong kind, an unknown flag)."""
    optional = FLAGS[command]
    present = [f for f in optional if draw(st.integers(0, 3)) == 0]
    slots = ["source", *REQUIRED[command], *present]
    mistakes = set(draw(st.lists(st.sampled_from(slots), max_size=draw(st.sampled_from([0, 0, 1, 1, 2])),
                                 unique=True)))

    def pick(slot: str, choices) -> object:
        if choices is None:
            return True
        fit, wrong = choices
        return draw(st.sampled_from(wrong if (slot in mistakes or not fit) and wrong else fit))

    source = pick("source", SOURCES[command])
    argv: list = [command, ("path", source.split("+")[0])]
    options: dict[str, object] = {"source": source}
    if source.endswith("+config"):
        options["--config"] = "cfg4"
        argv += ["--config", "cfg4"]
    for slot, choices in REQUIRED[command].items():
        value = pick(slot, choices)
        if slot == "budget":
            tokens = str(value).split()
            options.update(zip(tokens[::2], tokens[1::2]))
            argv += tokens
        elif value is not None:                      # None: the required flag left out
            options[slot] = value
            argv += [slot, value]
    for flag in present:
        value = pick(flag, optional[flag])
        options[flag] = value
        argv += [flag] if value is True else [flag, value]
    if command == "search" and "--evaluate" in options and "--test-size" not in options:
        argv += ["--test-size", "16"]                 # the whole test set takes most of a minute here
        options["--test-size"] = "16"
    return argv, options


PATH_FLAGS = {"--out", "--data-root", "--config"}


def _after(argv: list[str], flag: str) -> str:
    """The value given to ``flag`` in ``argv``."""
    return argv[argv.index(flag) + 1]


def _concrete(argv: list, world: dict, work: Path) -> list[str]:
    out, flag = [], None
    for token in argv:
        if isinstance(token, tuple):
            out.append(_path(token[1], world, work))
        elif flag in PATH_FLAGS:
            out.append(_config(token, world, work) if flag == "--config" else _path(token, world, work))
        else:
            out.append(token)
        flag = token if isinstance(token, str) and token.startswith("--") else None
    return out


def _config(kind: str, world: dict, work: Path) -> str:
    """A configuration file: W4A4, a mixed one from the space, or one with a mistake."""
    names = world["supernet"].searchable
    docs = {"mixed": {"bit_cfg": {n: [4 + i % 2, 3 + i % 3] for i, n in enumerate(names)}},
            "bad": {"bit_cfg": {**{n: [4, 4] for n in names}, names[0]: [7, 4]}}}
    if kind not in docs:
        return _path(kind, world, work)
    path = work / f"{kind}.json"
    path.write_text(json.dumps(docs[kind]))
    return str(path)


def check_search(result: dict, options: dict, world: dict, out: Path | None) -> None:
    """What a successful search must have answered: the budget asked for (reachable), a configuration of the
    checkpoint's space within it, the scoring images asked for, and the same JSON in the file as on stdout."""
    table, space = world["table"], world["space"]
    target = float(options["--gbitops"]) * 1e9 if "--gbitops" in options else level_bitops(table,
                                                                                           float(options["--level"]))
    assert result["target_gbitops"] == pytest.approx(target / 1e9, rel=1e-12)
    lo, hi = greedy_reachable(space, lambda c: bitops(table, c), 5)
    assert lo <= target <= hi
    cfg = space.validate(cfg_from_json(result["bit_cfg"]))
    assert bitops(table, cfg) == pytest.approx(result["gbitops"] * 1e9, rel=1e-12) and bitops(table, cfg) <= target
    assert result["scoring_images"] == int(options.get("--score-size", 128))
    assert result["score_metric"] == options.get("--metric", "loss")
    assert result["data"] == {"name": "fashion_mnist", "seed": 0}
    if "--evaluate" in options:
        assert 0 <= result["test_acc"] <= 1
    if out is not None:
        assert json.loads(out.read_text()) == result
        assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~world["umask"]


def check_export(summary: dict, options: dict, world: dict, argv: list[str]) -> None:
    from mpq.deploy.model import load

    out = Path(_after(argv, "--out"))
    cfg = json.loads(Path(_after(argv, "--config")).read_text())["bit_cfg"]
    deployed = load(out)
    assert {p.name for p in out.iterdir()} == {"model.json", "weights.npz", "model.onnx"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~world["umask"]          # the umask's, not mkdtemp's 0700
    assert deployed.meta["bit_cfg"] == cfg and summary["out"] == str(out)
    assert summary["gbitops"] == pytest.approx(world["supernet"].bitops(cfg_from_json(cfg)) / 1e9, rel=1e-12)
    assert summary["gbitops_onnx_graph"] == summary["gbitops"]


def check_evaluate(result: dict, options: dict, world: dict, argv: list[str]) -> None:
    assert result["test_images"] == int(options["--test-size"])
    assert result["dataset"] == options.get("--dataset", "fashion_mnist")
    assert result["onnx_logits_equal_integer"] is True                   # bit for bit, whatever the input
    for key, value in result.items():
        if key.startswith(("acc_", "top1_agreement_")):
            assert 0 <= value <= 1, (key, value)
    if options["source"] == "ckpt+config":
        agreement = int(options.get("--agreement-images", min(256, result["test_images"])))
        assert result["code_agreement"]["images"] == agreement and "acc_fake_quant" in result
    if "--out" in options:
        assert json.loads(Path(_after(argv, "--out")).read_text()) == result


def check_command_line(command: str, example: tuple[list, dict], world: dict, capsys) -> None:
    """Run one drawn command line in a fresh folder and judge it: a right result, or one line of refusal."""
    template, options = example
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        argv = _concrete(template, world, work)
        code, out, err = run(argv, capsys)
        if code == 0:
            result = json.loads(out)
            if command == "search":
                check_search(result, options, world, Path(_after(argv, "--out")) if "--out" in options else None)
            elif command == "export":
                check_export(result, options, world, argv)
            else:
                check_evaluate(result, options, world, argv)
        else:
            refused(code, err)
        no_temporaries(work, world["ckpt"].parent, world["exports"][4].parent)
    assert world["ckpt"].read_bytes() == world["bytes"]                    # an input is never written over


@pytest.mark.timeout(150)          # the first test to run builds the shared fixtures (30-40 s here)
@settings(FUZZ, max_examples=10)
@given(data=st.data())
def test_search_answers_as_asked_or_refuses_in_one_line(world, toy_scores, capsys, data):
    check_command_line("search", data.draw(argv_for("search"), label="argv"), world, capsys)


@pytest.mark.timeout(150)          # the first test to run builds the shared fixtures (30-40 s here)
@settings(FUZZ, max_examples=5)
@given(data=st.data())
def test_export_answers_as_asked_or_refuses_in_one_line(world, capsys, data):
    check_command_line("export", data.draw(argv_for("export"), label="argv"), world, capsys)


@pytest.mark.timeout(150)          # the first test to run builds the shared fixtures (30-40 s here)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_evaluate_answers_as_asked_or_refuses_in_one_line(world, capsys, data):
    check_command_line("evaluate", data.draw(argv_for("evaluate"), label="argv"), world, capsys)


# --- an export folder's files -------------------------------------------------------------------------------

@pytest.mark.timeout(150)          # the first test to run builds the shared fixtures (30-40 s here)
@settings(FUZZ, max_examples=30)
@given(damage=st.lists(st.tuples(st.sampled_from(["model.json", "weights.npz", "model.onnx"]),
                                 st.sampled_from(["truncate", "swap", "empty", "flip", "delete"]),
                                 st.floats(0, 1, exclude_max=True)), min_size=1, max_size=2))
def test_an_export_folder_with_damaged_or_swapped_files_is_refused_naming_the_file(world, capsys, damage):
    """Each example damages one or two files of an export (truncated at a random place, swapped for the other
    export's, emptied, a byte flipped, deleted), then evaluates it: refused in one line naming one of its files,
    or, where the damage changed nothing, the same result as the intact folder's."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name) / "deployed"
        shutil.copytree(world["exports"][4], folder)
        for fname, how, where in damage:
            path = folder / fname
            if not path.exists():
                continue
            data = path.read_bytes()
            at = int(where * len(data)) if data else 0
            if how == "truncate":
                path.write_bytes(data[:at])
            elif how == "swap":
                shutil.copy(world["exports"][3] / fname, path)
            elif how == "empty":
                path.write_bytes(b"")
            elif how == "flip" and data:
                path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
            elif how == "delete":
                path.unlink()
        intact = all((folder / f).exists() and (folder / f).read_bytes() == (world["exports"][4] / f).read_bytes()
                     for f in ("model.json", "weights.npz", "model.onnx"))
        code, out, err = run(["evaluate", str(folder), *EVALUATE], capsys)
        if code == 0:
            assert intact, (damage, out)        # a damaged folder never gives a result
            assert {**json.loads(out), "source": None} == {**world["evaluated"], "source": None}
        else:
            assert not intact
            refused(code, err, "model.json", "weights.npz", "model.onnx")


# --- a checkpoint's dictionary ----------------------------------------------------------------------------

ODD_VALUES = ["x", None, [], {}, -1, 2.5, True, math.nan, math.inf]


def _entries(state: dict) -> list[tuple[str, ...]]:
    """Addresses of the entries a mutation may touch: top-level keys, and those of config, meta and meta.data."""
    out = [(k,) for k in state]
    for inner in ("config", "meta"):
        out += [(inner, k) for k in state[inner]]
    out += [("meta", "data", k) for k in state["meta"]["data"]]
    return out


@st.composite
def mutations(draw, state: dict) -> list:
    kinds = draw(st.lists(st.sampled_from(["add", "remove", "nonfinite", "mistype"]), min_size=1, max_size=2))
    out = []
    for kind in kinds:
        if kind == "add":
            where = draw(st.sampled_from([(), ("config",), ("meta",), ("meta", "data")]))
            out.append(("add", where, draw(st.sampled_from(["extra", "new_option", "zeta"])),
                        draw(st.sampled_from(ODD_VALUES[:7]))))
        elif kind == "remove":
            out.append(("remove", draw(st.sampled_from(_entries(state)))))
        elif kind == "nonfinite":
            tensors = [("ema", k) for k, v in state["ema"].items() if torch.is_tensor(v) and v.is_floating_point()]
            floats = [a for a in _entries(state) if isinstance(_get(state, a), float)]
            out.append(("set", draw(st.sampled_from(tensors + floats)), draw(st.sampled_from([math.nan, math.inf]))))
        else:
            out.append(("set", draw(st.sampled_from(_entries(state))), draw(st.sampled_from(ODD_VALUES))))
    return out


def _get(state: dict, address: tuple) -> object:
    for key in address:
        state = state[key]
    return state


def _apply(state: dict, mutation: tuple) -> None:
    if mutation[0] == "add":
        _, where, key, value = mutation
        try:
            target = _get(state, where)
        except (KeyError, TypeError):
            return                              # removed or replaced by an earlier mutation
        if isinstance(target, dict):
            target[key] = value
        return
    address = mutation[1]
    try:
        parent = _get(state, address[:-1])
    except (KeyError, TypeError):
        return                                  # removed or replaced by an earlier mutation
    if not isinstance(parent, dict) or address[-1] not in parent:
        return
    if mutation[0] == "remove":
        del parent[address[-1]]
    elif torch.is_tensor(parent[address[-1]]) and isinstance(mutation[2], float):
        parent[address[-1]] = torch.full_like(parent[address[-1]], mutation[2])
    else:
        parent[address[-1]] = mutation[2]





@pytest.mark.timeout(150)          # the first test to run builds the shared fixtures (30-40 s here)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_a_checkpoint_with_keys_added_removed_or_values_broken_is_refused_or_searched_right(world, toy_scores,
                                                                                           capsys, data):
    """Each example changes a checkpoint's dictionary (a key added or removed, at the top or in config, meta or
    the data identity; a value made non-finite or of another type) and searches it: refused in one line naming
    the file, or the same configuration as the intact checkpoint (what changed is read by no part of the search)."""
    import copy

    base, expected = world["intact"]
    changes = data.draw(mutations(base), label="changes")
    state = copy.deepcopy(base)
    for change in changes:
        _apply(state, change)
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "changed.pt"
        torch.save(state, path)
        code, out, err = run(["search", str(path), *SEARCH], capsys)
        if code == 0:
            assert {k: v for k, v in json.loads(out).items() if k in ANSWER} == expected, changes
        else:
            refused(code, err, str(path))


# --- a params file ----------------------------------------------------------------------------------------

TINY_TEXT = (ROOT / "profiles" / "tiny.yaml").read_text()
TINY = yaml.safe_load(TINY_TEXT)


def read_every_section(path: Path) -> None:
    """What the stages read from a params file: the top level, then every section built as its stage builds it."""
    params = load_params(path)
    for section, cls in LOADERS.items():
        values = params
        for key in section.split("."):
            values = values[key]
        _sane(from_dict(cls, values, section))
    model_specs(params["models"])


@st.composite
def params_edits(draw) -> tuple[str, str, str]:
    """``(kind, key, text)``: the tiny profile with one key given twice (a line repeated, or a section header
    given again at the end), a section or a model's entry nulled, or a value replaced by one of another type."""
    kind = draw(st.sampled_from(["duplicate", "null", "retype"]))
    if kind == "duplicate":
        lines = TINY_TEXT.splitlines(keepends=True)
        keyed = [i for i, line in enumerate(lines) if re.match(r"^[a-z_0-9]+:|^  [a-z_0-9]+: \S", line)]
        i = draw(st.sampled_from(keyed))
        key = lines[i].split(":")[0].strip()
        if not lines[i].startswith(" "):                                     # a top-level key: given again at the end
            again = lines[i] if not lines[i].split("#")[0].rstrip().endswith(":") else f"{key}:\n  x: 1\n"
            return kind, key, TINY_TEXT + again
        return kind, key, "".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
    params = json.loads(json.dumps(TINY))
    section = draw(st.sampled_from([k for k, v in params.items() if isinstance(v, dict)]))
    if kind == "null":
        entries = [(section,)] + [(section, k) for k, v in params[section].items()
                                  if section in ("models", "model_bits") and isinstance(v, dict)]
        address = draw(st.sampled_from(entries))
        parent = params if len(address) == 1 else params[section]
        parent[address[-1]] = None
        key = address[-1]
    else:
        key = draw(st.sampled_from(sorted(params[section])))
        params[section][key] = draw(st.sampled_from(["x", None, [], {}, -1, 2.5, True, [1, "a"], 1e400]))
    return kind, key, yaml.safe_dump(params, sort_keys=False)


@pytest.mark.timeout(30)
@settings(FUZZ, max_examples=60)
@given(edit=params_edits())
def test_a_params_file_with_duplicates_nulls_or_retyped_values_is_refused_naming_the_place(edit):
    """A key given twice or a section nulled is refused when the file is read, naming the file, the line and the
    key; a value of another type is refused naming its key where its section is built, or accepted and sane."""
    kind, key, text = edit
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "params.yaml"
        path.write_text(text)
        try:
            read_every_section(path)
        except ValueError as exc:
            message = str(exc)
            assert "\n" not in message and key in message, (key, message)
            if kind in ("duplicate", "null"):
                assert re.match(rf"^{re.escape(str(path))}, line \d+: ", message), message
        else:
            assert kind == "retype", text                 # a duplicate or a null is never accepted
