"""Command line: ``python -m sweeps <name> [overrides]``.

  python -m sweeps trpo_cartpole                                   # run (or resume) a shipped sweep
  python -m sweeps trpo_cartpole sweep.n_trials=40 sweep.seeds=5   # sweep.* overrides the definition
  python -m sweeps trpo_hopper hydra/launcher=joblib hydra.launcher.n_jobs=3   # anything else goes to
                                                                   # every run (trpo_exp overrides)
  python -m sweeps --list                                          # the definitions in sweeps/conf/sweep/

Run the same command again to resume (finished trials are kept, dead workers' trials retried), or
in several shells / on several machines sharing sweep.storage to work on one sweep together.
Mistakes stop the sweep before any trial starts with one line and exit status 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Optional

from sweeps.definition import SweepError, SweepSpec, available, load, search_space
from trpo_exp.redact import redact_secrets
from trpo_exp.signals import Terminated
from trpo_exp.util import atomic_write_text

EXIT_USAGE = 2
USAGE = "usage: python -m sweeps <name> [sweep.key=value ...] [trpo_exp overrides ...]  |  --list"


def split_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """``sweep.*`` overrides change the definition; everything else is a trpo_exp override of every run."""
    sweep: list[str] = []
    run: list[str] = []
    for arg in args:
        (sweep if arg.lstrip("+~").startswith("sweep.") else run).append(arg)
    return sweep, run


def paths(spec: SweepSpec) -> tuple[Path, str]:
    """The sweep directory and the storage URL (relative paths made absolute: runs may start
    elsewhere, e.g. on a cluster node)."""
    sweep_dir = Path(spec.dir or Path("runs") / "sweeps" / spec.study).resolve()
    url = spec.storage or f"sqlite:///{sweep_dir / 'study.db'}"
    if url.startswith("journal:"):
        rest = url.split(":", 1)[1]
        url = "journal:" + str(Path(rest[2:] if rest.startswith("//") else rest).resolve())
    return sweep_dir, url


def pruner_spec(spec: SweepSpec, iters_per_run: int) -> dict:
    """The study's pruner in Optuna step units: seed k of n reports iteration i as step (i-1)*n + k
    (sweeps.trial_report), so an iteration count becomes n times as many steps."""
    p, n = spec.pruner, spec.seeds
    if p.name == "median":
        return {"name": "median", "kwargs": {"n_startup_trials": p.n_startup_trials,
                                             "n_warmup_steps": p.n_warmup_iters * n, "interval_steps": 1}}
    if p.name == "hyperband":
        if p.min_resource_iters >= iters_per_run:
            raise SweepError(f"sweep.pruner.min_resource_iters={p.min_resource_iters} is not allowed: must be < the "
                             f"policy iterations of one run ({iters_per_run})")
        return {"name": "hyperband", "kwargs": {"min_resource": p.min_resource_iters * n,
                                                "max_resource": iters_per_run * n,
                                                "reduction_factor": p.reduction_factor}}
    return {"name": "none", "kwargs": {}}


SWEEP_MARKER = "sweep.json"


def claim_sweep_dir(sweep_dir: Path, study: str, url: str) -> None:
    """A sweep dir holds the records of one study: a second study there would write its trials into
    the first one's trials/<n>/ directories. Refused with one line; the first claim is recorded."""
    marker = sweep_dir / SWEEP_MARKER
    if marker.exists():
        try:
            owner = json.loads(marker.read_text()).get("study")
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner != study:
            raise SweepError(f"sweep.study={study!r} is not allowed in sweep.dir={str(sweep_dir)!r}: it holds the "
                             f"records of study {owner!r}; give the new study its own sweep.dir")
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"study": study, "storage": url}, indent=2) + "\n")


def prepare(name: str, args: list[str]):
    """Everything that can go wrong with the input, checked before any trial starts."""
    from sweeps.launch import RunLauncher
    from sweeps.study import SweepStudy, identity

    sweep_args, run_args = split_overrides(args)
    spec = load(name, sweep_args)
    params = search_space(spec)
    sweep_dir, url = paths(spec)
    run_overrides = [*spec.overrides, *run_args]
    launcher = RunLauncher(run_overrides, sweep_dir)
    iters = launcher.check_space(params)
    pruner = pruner_spec(spec, iters)
    sweep = SweepStudy(spec, url, pruner)
    claim_sweep_dir(sweep_dir, spec.study, sweep.url)
    sweep.open({**identity(spec, run_overrides), "pruner": pruner})
    if sweep.created and any((sweep_dir / "trials").glob("*/*/run.json")):
        raise SweepError(f"sweep.dir={str(sweep_dir)!r} is not allowed: it holds trial records of study "
                         f"{spec.study!r}, but {sweep.url} has no such study (an emptied or lost storage?): "
                         f"restore the storage, or give the new study its own sweep.dir")
    return spec, params, sweep, launcher, sweep_dir


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + USAGE)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--list":
        print("\n".join(available()))
        return 0
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own progress lines
    try:
        spec, params, sweep, launcher, sweep_dir = prepare(argv[0], argv[1:])
    except SweepError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"sweeps: error: {redact_secrets(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    from sweeps.worker import Worker

    print(f"sweeps: study {spec.study!r} in {sweep.url} ({spec.n_trials} trials x {spec.seeds} seeds); "
          f"runs in {sweep_dir}", flush=True)
    worker = Worker(spec, params, sweep, launcher, sweep_dir)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        info = worker.run()
    except (KeyboardInterrupt, Terminated) as stop:
        what = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated by SIGTERM"
        number = worker.release(f"its worker was {what}")
        given_back = f"; trial {number} is re-queued with the same parameters" if number is not None else ""
        print(f"sweeps: {what}{given_back}; run the same command to go on", file=sys.stderr, flush=True)
        return 130 if isinstance(stop, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"sweeps: trials {json.dumps(info['trial_states'])}{_not_retried(info['not_retried'], spec)}; "
          f"best {json.dumps(info['best_trial'])}; report {json.dumps(info['report'])}; tables in {sweep_dir}",
          flush=True)
    return 0


def _not_retried(trials: list[dict], spec: SweepSpec) -> str:
    """The summary's count of trials whose worker stopped and that were not retried: fewer than
    sweep.n_trials trials then end COMPLETE or PRUNED."""
    if not trials:
        return ""
    which = ", ".join(f"trial {t['trial']} (slot {t['slot']})" for t in trials)
    return f"; {len(trials)} failed and not retried (sweep.max_retries={spec.max_retries}): {which}"


def _terminate(signum: int, frame: Optional[FrameType]) -> None:
    raise Terminated("terminated by SIGTERM")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
