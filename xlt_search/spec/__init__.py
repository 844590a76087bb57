"""The search spec: a YAML file validated into frozen dataclasses."""

from xlt_search.spec.checks import SPLITS, check_spec
from xlt_search.spec.parse import load_spec, parse_source, parse_spec, spec_to_dict
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
from xlt_search.spec.source import SpecSource, read_spec

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
    "SpecSource",
    "SubsetSpec",
    "TargetSpec",
    "check_spec",
    "load_spec",
    "parse_source",
    "parse_spec",
    "read_spec",
    "spec_to_dict",
]
