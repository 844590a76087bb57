"""User-facing errors: each one is a single line that names the problem and the fix (exit status 2)."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: reported as one line, exit status 2, no traceback unless --debug."""


class SpecError(UserError):
    """A search spec that does not validate."""


class UnknownTaskError(UserError):
    """A task key that is not in the registry."""


class TrialDiverged(RuntimeError):
    """A trial whose loss became NaN or infinite; it fails alone and the search goes on."""


class SearchInterrupted(Exception):
    """A search stopped by SIGINT (Ctrl-C) or SIGTERM: its checkpoints and logged metrics are kept,
    its MLflow parent run is KILLED, and `xlt-search resume` continues it (exit status 130).

    `options` are the ones `xlt-search resume` needs to find the search again (`--tracking-uri`,
    `--run-id`), if any. `restart` is the command that starts the search again, for a stop that
    came before the search had begun (its data still being prepared): there is nothing to resume.
    """

    def __init__(self, experiment: str, *options: str, restart: str | None = None) -> None:
        self.experiment, self.options = experiment, options
        if restart is not None:
            super().__init__(
                f"interrupted before the search began (nothing to resume; the data prepared so "
                f"far is kept); start it again with: {restart}"
            )
            return
        command = shlex.join(["xlt-search", "resume", experiment, *options])
        super().__init__(f"interrupted; continue with: {command}")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for the closest option, or '' when none is close."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
