"""The one exception type the analysis raises for user mistakes (bad path, empty selection, ...).

``str(err)`` is a single line; ``python -m analysis.report`` prints it as ``analysis: error: ...``
and exits non-zero instead of showing a traceback.
"""


class AnalysisError(Exception):
    """A user-facing problem with the selection or the options; the message is one line."""


class OptionError(AnalysisError):
    """An option value outside what the command accepts, raised before anything is written. Exit
    status 2, the status argparse gives its own usage errors (e.g. ``--points abc``)."""
