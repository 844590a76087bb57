"""MLflow: a search's parent and child runs, the delivery queue and its journal, reading back."""

from xlt_search.names import (
    EXPERIMENT_PATH_TAG,
    INTERRUPTED,
    MAX_TAG_CHARS,
    PARENT_TAG,
    ROLE_TAG,
    RUN_STATUS,
    RUNNING,
    SEARCH_STATE,
    STATE_TAG,
    TRIAL_ID_TAG,
    TrialStatus,
)
from xlt_search.tracking.delivery import RETRY_MAX_WAIT_S
from xlt_search.tracking.journal import JOURNAL_PATTERN, sync
from xlt_search.tracking.logger import FLUSH_TIMEOUT_S, SearchLogger
from xlt_search.tracking.read import (
    TRIAL_COLUMNS,
    FoundSearch,
    SearchSummary,
    find_search,
    list_searches,
    load_trials,
    log_search_artifacts,
    mark_search,
    search_tags,
)
from xlt_search.tracking.uri import (
    check_tracking_scheme,
    check_tracking_uri,
    masked,
    resolve_tracking_uri,
)

__all__ = [
    "EXPERIMENT_PATH_TAG",
    "FLUSH_TIMEOUT_S",
    "INTERRUPTED",
    "JOURNAL_PATTERN",
    "MAX_TAG_CHARS",
    "PARENT_TAG",
    "RETRY_MAX_WAIT_S",
    "ROLE_TAG",
    "RUN_STATUS",
    "RUNNING",
    "SEARCH_STATE",
    "STATE_TAG",
    "TRIAL_COLUMNS",
    "TRIAL_ID_TAG",
    "FoundSearch",
    "SearchLogger",
    "SearchSummary",
    "TrialStatus",
    "check_tracking_scheme",
    "check_tracking_uri",
    "find_search",
    "list_searches",
    "load_trials",
    "log_search_artifacts",
    "mark_search",
    "masked",
    "resolve_tracking_uri",
    "search_tags",
    "sync",
]
