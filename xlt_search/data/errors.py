"""The one-line errors of task data: data that does not fit its declaration, or cannot be reached."""

from __future__ import annotations

from xlt_search.errors import UserError


class DataError(UserError):
    """A task whose data does not fit its declaration (a missing column, split or label)."""


class DataUnavailable(UserError):
    """A dataset that cannot be read: not on disk, and the hub unreachable."""
