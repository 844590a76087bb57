"""The search spec: a YAML file validated into frozen dataclasses."""

from xlt_search.spec.checks import SPLITS, check_spec
from xlt_search.spec.parse import load_spec, parse_spec, spec_to_dict
from xlt_search.spec.schema import (
    DOMAIN_KINDS,
    HYPERPARAMETERS,
    BudgetSpec,
    DataSpec,
    Domain,
    MLflowSpec,
    ResourcesSpec,
    SearchSpec,
    SubsetSpec,
    TargetSpec,
)

__all__ = [
    "DOMAIN_KINDS",
    "HYPERPARAMETERS",
    "SPLITS",
    "BudgetSpec",
    "DataSpec",
    "Domain",
    "MLflowSpec",
    "ResourcesSpec",
    "SearchSpec",
    "SubsetSpec",
    "TargetSpec",
    "check_spec",
    "load_spec",
    "parse_spec",
    "spec_to_dict",
]
