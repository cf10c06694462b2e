"""One-line messages for configuration mistakes that Hydra itself detects (unknown keys, wrong
types, unknown config-group options, bad override syntax).

Hydra prints these as several lines plus a hint about HYDRA_FULL_ERROR, and exits with status 1.
We wrap Hydra's reporting function so such errors print as a single line and exit with status 2,
like the range checks in trpo_exp.config. Errors raised by training code are not touched: a real
bug keeps its traceback. HYDRA_FULL_ERROR=1 restores Hydra's behaviour entirely.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from trpo_exp import launcher_guard

EXIT_CONFIG_ERROR = 2


def one_line(err: BaseException) -> str:
    """Condense a Hydra/OmegaConf error chain into one line that keeps the key, value and options."""
    parts: list[str] = []
    seen: BaseException | None = err
    while seen is not None and len(parts) < 3:
        text = str(seen)
        # Hydra appends the config search path to missing-option errors; it is noise here.
        text = text.split("\nConfig search path:")[0]
        options = re.search(r"Available options in '([^']+)':\s*((?:\n\t[^\n]+)+)", text)
        head = text.split("\n")[0].strip()
        if options:
            names = ", ".join(o.strip() for o in options.group(2).strip().split("\n")
                              if not o.strip().startswith("base_"))  # schemas, not choices
            head = f"{head} (options in '{options.group(1)}': {names})"
        key = re.search(r"full_key: (\S+)", text)
        if key and key.group(1) not in head:
            head = f"{head} [key {key.group(1)}]"
        if head and head not in parts:
            parts.append(head)
        seen = seen.__cause__
    return " ".join(parts)


def multirun_hint(argv: list[str], message: str) -> str:
    """A key refused in a multirun that sweeps algo, env or experiment: Hydra composes the config
    once without the swept choices (the default algo, env) and checks every fixed override against
    it, so `-m experiment=figure4_npg_fixed_hopper,figure4_npg_fixed_walker2d algo.step_size=0.6`
    fails although both presets have step_size. Say so, and what to do instead."""
    if "Could not override" not in message or not {"-m", "--multirun"} & set(argv):
        return ""
    swept = [a for a in argv if re.match(r"^(algo|env|experiment)=[^=]*,", a)]
    if not swept:
        return ""
    return (f" (in a multirun Hydra checks fixed overrides against the config without the swept "
            f"{' '.join(swept)}: give a key that only some of them have in a multirun of its own)")


def is_refused_submission(err: BaseException) -> bool:
    """sbatch refused a submitit launcher's jobs (unknown partition or account, controller gone):
    submitit raises FailedJobError from sbatch's CalledProcessError. A job that failed while it ran
    raises FailedJobError too, without that cause, and keeps its traceback."""
    return type(err).__name__ == "FailedJobError" and isinstance(err.__cause__, subprocess.CalledProcessError)


def is_output_dir_error(err: BaseException) -> bool:
    """Hydra could not create a job's output dir (hydra.run.dir is a file, not writable, on a
    read-only filesystem): an OSError raised in Hydra's own job set-up, before any of our code."""
    if not isinstance(err, OSError) or not err.filename:
        return False
    frames = traceback.extract_tb(err.__traceback__)
    return any("hydra" in Path(f.filename).parts and f.name == "run_job" for f in frames)


def exit_if_setup_error(err: Exception) -> None:
    """One line and an exit for an error of the user's setup (run dir, SLURM) rather than a bug;
    returns for any other error, which keeps its traceback."""
    if is_output_dir_error(err):
        assert isinstance(err, OSError)
        print(f"trpo_exp: error: the run dir {err.filename!s} cannot be made: {err.strerror} "
              f"(choose another hydra.run.dir)", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    if isinstance(err, launcher_guard.SlurmUnresponsive):
        print(f"trpo_exp: error: {err}", file=sys.stderr)
        sys.exit(1)
    if is_refused_submission(err):
        said = (str(err).strip() or type(err).__name__).splitlines()[-1]
        print(f"trpo_exp: error: SLURM refused the jobs: {said} (no job was started)", file=sys.stderr)
        sys.exit(1)


def install() -> None:
    """Wrap hydra._internal.utils.run_and_report (Hydra 1.3) so configuration errors print one line."""
    if {"-m", "--multirun"} & set(sys.argv[1:]):  # only a multirun uses a launcher; the bound holds always
        launcher_guard.install()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return
    try:
        from hydra._internal import utils as hydra_utils
    except ImportError:  # another Hydra layout: keep its own reporting
        return
    original: Callable[[Any], Any] = hydra_utils.run_and_report
    if getattr(original, "_trpo_exp_wrapped", False):
        return

    def run_and_report(func: Any) -> Any:
        def guarded() -> Any:
            try:
                return func()
            except (HydraException, OmegaConfBaseException) as err:
                message = one_line(err)
                print(f"trpo_exp: error: {message}{multirun_hint(sys.argv[1:], message)}", file=sys.stderr)
                sys.exit(EXIT_CONFIG_ERROR)
            except Exception as err:
                exit_if_setup_error(err)
                raise
        return original(guarded)

    run_and_report._trpo_exp_wrapped = True  # type: ignore[attr-defined]
    hydra_utils.run_and_report = run_and_report
