"""A W&B project through ``wandb.Api()``, for users who log online.

Not exercised against a server in this repository's tests (no network): only the argument
handling and the one-line error when W&B cannot be reached are tested, plus the conversion of run
objects through a stand-in with the same attributes. What is used of the public API:
``wandb.Api(timeout=...).runs("entity/project", filters=...)`` and, per run, ``id``, ``name``,
``group``, ``tags``, ``state``, ``config``, ``summary`` and ``scan_history()`` (every row,
unsampled, unlike ``run.history()`` which samples 500 rows).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from analysis.errors import AnalysisError
from analysis.sources import wandb_rows
from analysis.sources.base import Batch, Candidate, run_row

NAME = "api"
TIMEOUT_S = 30


def project_path(spec: str, entity: str | None = None) -> str:
    """'entity/project', or 'project' plus ``entity`` -> 'entity/project' ('project' alone = the
    account's default entity, as wandb does)."""
    spec = spec.strip().strip("/")
    parts = spec.split("/")
    if not spec or len(parts) > 2 or not all(parts):
        raise AnalysisError(f"W&B project {spec!r} is not of the form entity/project or project")
    if len(parts) == 2:
        if entity and entity != parts[0]:
            raise AnalysisError(f"--entity {entity} contradicts the project path {spec}")
        return spec
    return f"{entity}/{spec}" if entity else spec


def parse_filters(text: str | dict | None) -> dict | None:
    """MongoDB-style filters for ``Api.runs`` given as JSON, e.g. '{"config.algo.name": "trpo"}'."""
    if text is None or isinstance(text, dict):
        return text
    try:
        filters = json.loads(text)
    except ValueError as err:
        raise AnalysisError(f"--api-filters is not valid JSON ({err})") from None
    if not isinstance(filters, dict):
        raise AnalysisError("--api-filters must be a JSON object, e.g. '{\"config.algo.name\": \"trpo\"}'")
    return filters


def discover(sources: Sequence[str], entity: str | None = None, filters: Any = None,
             **_: object) -> list[Candidate]:
    paths = [project_path(s, entity) for s in sources]
    filters = parse_filters(filters)
    try:
        import wandb

        api = wandb.Api(timeout=TIMEOUT_S)
        runs = [(path, run) for path in paths for run in api.runs(path, filters=filters)]
    except AnalysisError:
        raise
    except Exception as err:  # no network, no API key, unknown project: wandb raises many types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise AnalysisError(f"could not list W&B runs of {', '.join(paths)} ({type(err).__name__}: {first})") from None
    return [Candidate(run_id=f"{path}/{run.id}", path=f"wandb:{path}/{run.id}", fingerprint=_fingerprint(run),
                      handle=run) for path, run in runs]


def _fingerprint(run: Any) -> str:
    # The listing already carries state, heartbeat and history length: a run that logged nothing new
    # since the last report keeps its fingerprint and is served from the cache.
    attrs = getattr(run, "_attrs", {}) or {}
    return f"{getattr(run, 'state', '')}|{attrs.get('heartbeatAt', '')}|{attrs.get('historyLineCount', '')}"


def read(candidates: Sequence[Candidate]) -> Batch:
    batch = Batch()
    for cand in candidates:
        run, notes = cand.handle, list[str]()
        try:
            config = dict(run.config)
            summary = _plain(run.summary)
            rows = list(run.scan_history())
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            batch.add(run_row(cand, NAME, meta={}, config=None, skip=f"W&B read failed: {first}"), None)
            continue
        meta = wandb_rows.meta(config, summary, name=getattr(run, "name", None), group=getattr(run, "group", None),
                               tags=getattr(run, "tags", None) or [], state=getattr(run, "state", None))
        history = wandb_rows.history_frame(rows, notes)
        batch.add(run_row(cand, NAME, meta=meta, config=config, problems=notes), history)
    return batch


def _plain(summary: Any) -> dict:
    """HTTPSummary behaves like a mapping; keep plain values only."""
    try:
        return {k: summary[k] for k in summary.keys()}
    except Exception:
        return dict(summary) if isinstance(summary, dict) else {}
