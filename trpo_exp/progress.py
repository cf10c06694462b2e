"""Progress display: a live bar on an interactive terminal, a plain line every few iterations in a
log file (where a bar would only add control characters)."""

from __future__ import annotations

import math
import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total_steps: int, label: str, log_every: int):
        self.interactive = sys.stderr.isatty()
        self.label = label
        self.log_every = log_every
        self.total = total_steps
        # One speed figure: the training rate of the last iteration (tqdm's own smoothed rate is off).
        fmt = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
        self.bar = (tqdm(total=total_steps, desc=label, unit="step", dynamic_ncols=True, bar_format=fmt)
                    if self.interactive else None)

    def update(self, iteration: int, env_steps: int, recent_return: float, steps_per_s: float) -> None:
        ret = "n/a" if math.isnan(recent_return) else f"{recent_return:.1f}"
        if self.bar is not None:
            self.bar.update(env_steps - self.bar.n)
            self.bar.set_postfix_str(f"return {ret}, {steps_per_s:.0f} steps/s")
        elif iteration % self.log_every == 0 or env_steps >= self.total:
            print(f"[{self.label}] iter {iteration} steps {env_steps}/{self.total} "
                  f"return {ret} {steps_per_s:.0f} steps/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
