"""The experiments a server offers: the built-in registry plus optional plug-ins."""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from engine.core import Experiment
from engine.experiments import EXPERIMENTS


def import_experiment(path: str) -> Experiment:
    """Import ``'package.module:attribute'`` and check that it is an Experiment."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"experiment path must look like 'package.module:attribute', got {path!r}")
    experiment = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(experiment, Experiment):
        raise ValueError(f"{path} is a {type(experiment).__name__}, not an engine.core.Experiment")
    return experiment


def load_registry(extra: Iterable[str] = ()) -> dict[str, Experiment]:
    """Built-in experiments, then each extra one (a duplicate slug is an error, not an override)."""
    registry = dict(EXPERIMENTS)
    for path in extra:
        experiment = import_experiment(path)
        if experiment.slug in registry:
            raise ValueError(f"slug {experiment.slug!r} from {path} is already registered")
        registry[experiment.slug] = experiment
    return registry
