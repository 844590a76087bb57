"""The rules of a spec's controls (`subsets.controls`), checked with the others by `check_spec`."""

from __future__ import annotations

from xlt_search.errors import SpecError
from xlt_search.names import SHUFFLED_KINDS, WORD_SHUFFLE
from xlt_search.spec.schema import SearchSpec


def check_controls(spec: SearchSpec) -> None:
    """Each control once, read against a baseline the search runs, on targets whose training
    data a word shuffle keeps labelled (not span extraction: its answers' offsets)."""
    controls, registry = spec.subsets.controls, spec.registry
    if not controls:
        return
    if len(set(controls)) < len(controls):
        raise SpecError("subsets.controls: a control is listed twice; list each control once")
    if not spec.runs_baseline:
        raise SpecError(
            "subsets.controls: a control is read against the no-intermediate baseline, which "
            "this search does not run; set subsets.baseline: true (not with sampler: optuna "
            "or guided) or remove subsets.controls"
        )
    for target in spec.fine_tuned_targets:
        kind = registry[target.task].kind
        if WORD_SHUFFLE in controls and kind not in SHUFFLED_KINDS:
            raise SpecError(
                f"subsets.controls: {WORD_SHUFFLE} cannot shuffle the {kind} target "
                f"{target.task}'s training data (its answers' offsets would point elsewhere); "
                "remove the control, or run it in a spec without that target"
            )
