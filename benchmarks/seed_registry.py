"""The seed registry: every (env, seed) whose result anyone here has seen, and why.

A seed's outcome on one machine is a fixed draw. Choosing among settings by their results on some
seeds selects for luck on those seeds, so a figure that claims a setting holds must come from seeds
that played no part in choosing it. ``benchmarks/seed_registry.csv`` lists the seeds already used,
per env preset: those of every run set kept under docs/ (tuning probes, reported tables, Figure 4)
and those named in the notes (the CartPole seeds vine's variants were chosen and checked on). Results
on a registered seed are exploration, never confirmation; ``fresh()`` draws seeds the registry has
never seen. benchmarks/returns.py uses it: ``--fresh N`` draws N fresh seeds, ``--confirm`` refuses
registered ones, and every finished run set registers its seeds.

    python benchmarks/seed_registry.py --rebuild          # rescan docs/ (keeps the hand-made rows)
    python benchmarks/seed_registry.py --show hopper      # the seeds used on an env, and where
    python benchmarks/seed_registry.py --fresh hopper walker2d -n 10
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "benchmarks" / "seed_registry.csv"
FIELDS = ("env", "seed", "use", "source")
# Fresh seeds are drawn from here up: far from the small integers everyone tries first.
FRESH_BASE = 10_000
# Rows that no CSV under docs/ holds (from the closing notes): kept by --rebuild.
NOTED = [*({"env": "cartpole", "seed": s, "use": "tuning", "source": "vine variants chosen on seeds 0-4 (issue 12)"}
           for s in range(5)),
         *({"env": "cartpole", "seed": s, "use": "reported", "source": "vine checked on seeds 5-9 (issue 24)"}
           for s in range(5, 10))]


def env_key(name: str) -> str:
    """'Hopper-v5', 'hopper', 'Hopper' -> 'hopper' (the env preset's name)."""
    return re.sub(r"-v\d+$", "", str(name).strip().split("/")[-1]).lower()


def read(path: Path = REGISTRY) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def used(env: str, rows: Iterable[dict[str, str]] | None = None) -> set[int]:
    key = env_key(env)
    return {int(r["seed"]) for r in (read() if rows is None else rows) if r["env"] == key}


def fresh(envs: Iterable[str], n: int, rows: Iterable[dict[str, str]] | None = None) -> list[int]:
    """The ``n`` smallest seeds >= FRESH_BASE that no env of ``envs`` has used: one set of seeds for
    every env of a comparison, none of them seen before."""
    rows = list(read() if rows is None else rows)
    taken = set().union(*(used(e, rows) for e in envs))
    seeds: list[int] = []
    candidate = FRESH_BASE
    while len(seeds) < n:
        if candidate not in taken:
            seeds.append(candidate)
        candidate += 1
    return seeds


def register(entries: Iterable[tuple[str, int]], use: str, source: str, path: Path = REGISTRY) -> int:
    """Add (env, seed) rows not yet registered for the same env and source. Returns how many."""
    rows = read(path)
    have = {(r["env"], int(r["seed"]), r["source"]) for r in rows}
    new = []
    for env, seed in entries:
        key = (env_key(env), int(seed), source)
        if key not in have:
            have.add(key)
            new.append({"env": key[0], "seed": str(key[1]), "use": use, "source": source})
    if new:
        write(rows + new, path)
    return len(new)


def write(rows: list[dict], path: Path = REGISTRY) -> None:
    ordered = sorted(rows, key=lambda r: (r["env"], int(r["seed"]), r["source"]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: r[k] for k in FIELDS} for r in ordered)


def scan_docs(docs: Path = ROOT / "docs") -> list[dict[str, str]]:
    """(env, seed) of every run in the run tables kept under docs/: each was looked at."""
    rows = []
    for table in sorted(docs.rglob("*.csv")):
        with open(table, newline="") as f:
            reader = csv.DictReader(f)
            if not {"env", "seed"} <= set(reader.fieldnames or ()):
                continue
            source = str(table.relative_to(ROOT))
            use = "tuning" if "probes" in table.parts or "sweep" in source else "reported"
            for row in reader:
                if row.get("seed", "").lstrip("-").isdigit() and row.get("env"):
                    rows.append({"env": env_key(row["env"]), "seed": str(int(row["seed"])), "use": use,
                                 "source": source})
    return rows


def rebuild() -> int:
    kept = [r for r in read() if not r["source"].startswith("docs/")]  # hand-made and run-set rows
    noted = [{k: str(v) for k, v in r.items()} for r in NOTED]
    unique = {(r["env"], r["seed"], r["source"]): r for r in [*noted, *kept, *scan_docs()]}
    write(list(unique.values()))
    return len(unique)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rebuild", action="store_true", help="rescan docs/ into the registry")
    p.add_argument("--show", metavar="ENV", help="the seeds used on ENV, with their sources")
    p.add_argument("--fresh", nargs="+", metavar="ENV", help="fresh seeds for these envs")
    p.add_argument("-n", type=int, default=10, help="how many fresh seeds (with --fresh)")
    a = p.parse_args(argv)
    if a.rebuild:
        print(f"seed registry: {rebuild()} rows in {REGISTRY.relative_to(ROOT)}")
    if a.show:
        for r in (r for r in read() if r["env"] == env_key(a.show)):
            print(f"{r['env']} {r['seed']:>6} {r['use']:<12} {r['source']}")
    if a.fresh:
        if a.n < 1:
            p.error(f"-n {a.n} is not allowed: must be >= 1")
        print(" ".join(str(s) for s in fresh(a.fresh, a.n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
