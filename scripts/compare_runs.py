"""Are two runs of the study the same? For proving a refactor on the tiny profile: run `dvc repro` in two
scratch copies (before and after), then

    python scripts/compare_runs.py BEFORE AFTER [reports/metrics reports/tables reports/configs checkpoints]

compares every metrics, table and configuration file value by value (wall times, and the throughput
benchmark, which holds only timings, are skipped) and every checkpoint byte for byte. Exit 0 when
everything is equal; else each difference is printed and the exit status is 1."""
import csv, io, json, math, sys
from pathlib import Path

TIME_WORDS = ("second", "time", "(s", "seconds", "wall", "elapsed", "date", "started", "python", "host", "cpu_kind", "environment", "duration", "ms", "speed", "throughput", "per_s")

def is_time(key: str) -> bool:
    k = key.lower()
    return any(w in k for w in TIME_WORDS) or k.endswith(("_s", " s")) or " s (" in k or k in ("s",)

def walk(a, b, path, diffs):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if is_time(str(k)):
                continue
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}"); continue
            walk(a[k], b[k], f"{path}/{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: length {len(a)} vs {len(b)}"); return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", diffs)
    else:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return
        if a != b:
            diffs.append(f"{path}: {a!r} vs {b!r}")

def compare_csv(pa, pb, diffs):
    ra = list(csv.DictReader(io.StringIO(pa.read_text()))); rb = list(csv.DictReader(io.StringIO(pb.read_text())))
    walk(ra, rb, str(pa.name), diffs)

def main():
    A, B = Path(sys.argv[1]), Path(sys.argv[2])
    subs = sys.argv[3:] or ["reports/metrics", "reports/tables", "reports/configs", "checkpoints"]
    diffs, n = [], 0
    for sub in subs:
        for pa in sorted((A / sub).rglob("*")):
            if pa.suffix not in (".json", ".csv", ".pt") or not pa.is_file():
                continue
            if pa.name == "throughput.json":        # the benchmark stage: wall-time ratios and profiles only
                continue
            pb = B / pa.relative_to(A)
            if not pb.exists():
                diffs.append(f"{pa.relative_to(A)}: missing in B"); continue
            n += 1
            if pa.suffix == ".pt":
                import hashlib
                ha, hb = (hashlib.sha256(x.read_bytes()).hexdigest() for x in (pa, pb))
                if ha != hb:
                    diffs.append(f"{pa.relative_to(A)}: bytes differ")
            elif pa.suffix == ".json":
                walk(json.loads(pa.read_text()), json.loads(pb.read_text()), str(pa.relative_to(A)), diffs)
            else:
                compare_csv(pa, pb, diffs)
        for pb in sorted((B / sub).rglob("*")):
            if pb.suffix in (".json", ".csv") and not (A / pb.relative_to(B)).exists():
                diffs.append(f"{pb.relative_to(B)}: missing in A")
    print(f"{n} files compared, {len(diffs)} differences (times skipped)")
    for d in diffs[:200]:
        print("  ", d)
    sys.exit(1 if diffs else 0)

main()
