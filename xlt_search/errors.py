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
    """A ' (did you mean 'x'?)' suffix for the closest option, or '' when none is close.

    Close is a small edit distance first; else `name` abbreviates exactly one option: its words'
    initials (`lr` for `learning_rate`), the start of it (`hyper` for `hyperparameters`), or the
    initials of its last words (`bs` for `per_device_batch_size`).
    """
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if not close:
        close = _abbreviated(name.lower(), options)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _abbreviated(name: str, options: list[str]) -> list[str]:
    """The one option `name` abbreviates, as a list (empty when none does, or several do)."""
    if len(name) < 2:
        return []
    words = {option: option.lower().split("_") for option in options}
    rules = (
        lambda w: "".join(word[:1] for word in w) == name,
        lambda w: "_".join(w).startswith(name) and len(name) >= 3,
        lambda w: any("".join(word[:1] for word in w[i:]) == name for i in range(1, len(w))),
    )
    for rule in rules:
        matches = [option for option in options if rule(words[option])]
        if len(matches) == 1:
            return matches
        if matches:
            return []
    return []
