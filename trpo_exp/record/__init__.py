"""The run record: the one owner of its format.

- ``files``: the files of a run directory;
- ``metrics``: the metric registry (CSV columns, W&B keys, time columns, figure labels);
- ``status``: the status values of run.json;
- ``writer``: RunRecord, which writes metrics.csv and run.json during a run;
- ``reader``: reading records back (the multirun summary, the sweep objective and analysis use it;
  import it as ``trpo_exp.record.reader``: it needs pandas and pyarrow, which a training run does not).
"""

from trpo_exp.record.files import CHECKPOINT, HYDRA_CONFIG, METRICS_CSV, RUN_JSON
from trpo_exp.record.metrics import (
                                     DIAGNOSTICS,
                                     LABELS,
                                     METRIC_COLUMNS,
                                     METRICS,
                                     STEP,
                                     TIME_COLUMNS,
                                     WANDB_KEYS,
                                     Kind,
                                     Metric,
)
from trpo_exp.record.status import Status
from trpo_exp.record.writer import Mirror, RecordTakenOver, RunRecord

__all__ = ["CHECKPOINT", "DIAGNOSTICS", "HYDRA_CONFIG", "LABELS", "METRICS", "METRIC_COLUMNS", "METRICS_CSV",
           "RUN_JSON", "STEP", "TIME_COLUMNS", "WANDB_KEYS", "Kind", "Metric", "Mirror", "RecordTakenOver", "RunRecord",
           "Status"]
