"""The Ray Tune edge: the plan of a search, its driver, and stopping it; Ray only once one runs."""

from xlt_search.search.checks import check_experiment
from xlt_search.search.driver import (
    RunOptions,
    prepare_search,
    prepare_search_data,
    resume_search,
    run_search,
)
from xlt_search.search.interrupts import (
    EXIT_INTERRUPTED,
    HOLD_ENV,
    STOP_SIGNALS,
    SearchStopped,
    fit,
    hold_point,
    stop_on_signals,
)
from xlt_search.search.plan import (
    SearchPlan,
    describe_plan,
    make_plan,
    target_configs,
    trial_config,
)
from xlt_search.search.progress import STATUS_EVERY_S

__all__ = [
    "EXIT_INTERRUPTED",
    "HOLD_ENV",
    "STATUS_EVERY_S",
    "STOP_SIGNALS",
    "RunOptions",
    "SearchPlan",
    "SearchStopped",
    "check_experiment",
    "describe_plan",
    "fit",
    "hold_point",
    "make_plan",
    "prepare_search",
    "prepare_search_data",
    "resume_search",
    "run_search",
    "stop_on_signals",
    "target_configs",
    "trial_config",
]
