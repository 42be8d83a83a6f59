"""The search space of a tune study: the template is a categorical dimension, and each template adds its own
``hpo:`` dimensions (after ``--hpo`` overrides) minus the hyper-parameters a ``--param`` fixes. Nothing here
imports Optuna: a trial only needs ``suggest_categorical``, ``suggest_float`` and ``suggest_int``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from otxlite.core.errors import OtxliteError
from otxlite.core.templates import (Dimension, Template, apply_overrides, check_key, flatten_keys, load_template,
                                    parse_dimension, parse_param)

TEMPLATE = "template"  # the name of the template dimension


@dataclass(frozen=True)
class TemplateSpace:
    """One template of a study: its hyper-parameters with the ``--param``s applied, those ``--param``s, and the
    dimensions searched."""

    template: Template
    hyper_parameters: dict[str, Any]
    fixed: tuple[str, ...]
    dimensions: dict[str, Dimension]

    def describe(self) -> dict[str, Any]:
        """What a study records of this template, to refuse a rerun with another setup."""
        return {"fixed": list(self.fixed), "space": {key: dim.spec() for key, dim in self.dimensions.items()}}

    def parameter(self, key: str) -> str:
        """The Optuna parameter name of ``key``: per template, since ranges and choices differ between templates."""
        return f"{self.template.name}/{key}"


def build_spaces(templates: list[str], params: list[str], hpo: list[str]) -> list[TemplateSpace]:
    """Load ``templates`` and apply ``--param KEY=VALUE`` (fixed: applied to each template that has the key) and
    ``--hpo KEY=RANGE`` (the dimension replaced or added in each template that has the key); every key must belong
    to at least one template, and every value and range is checked as in ``otxlite train``."""
    loaded = [load_template(name) for name in templates]
    names = [template.name for template in loaded]
    if len(set(names)) < len(names):
        raise OtxliteError(f"Each template may be given once; got {', '.join(templates)}.")
    parsed_params = [parse_param(param) for param in params]
    parsed_hpo = [parse_param(spec) for spec in hpo]
    leaves = [flatten_keys(template.hyper_parameters) for template in loaded]
    for option, pairs in (("--param", parsed_params), ("--hpo", parsed_hpo)):
        for key, _ in pairs:
            check_key(key, {leaf: None for keys in leaves for leaf in keys}, option)
    spaces = []
    for template, keys in zip(loaded, leaves):
        multiple = template.family.input_size_multiple
        fixed = tuple(param for param, (key, _) in zip(params, parsed_params) if key in keys)
        hyper_parameters = apply_overrides(template.hyper_parameters, list(fixed), multiple)
        overrides = {key: parse_dimension(key, spec, template.hyper_parameters, "--hpo", multiple)
                     for key, spec in parsed_hpo if key in keys}
        fixed_keys = {key for key, _ in parsed_params}
        dimensions = {key: dim for key, dim in (template.hpo | overrides).items() if key not in fixed_keys}
        spaces.append(TemplateSpace(template, hyper_parameters, fixed, dimensions))
    return spaces


def _label(choice: Any) -> Any:
    """How a choice is shown to Optuna, which takes only numbers, strings, booleans and None: a list as JSON."""
    return json.dumps(choice) if isinstance(choice, list) else choice


def suggest(trial: Any, spaces: list[TemplateSpace]) -> tuple[TemplateSpace, dict[str, Any]]:
    """Ask ``trial`` (an ``optuna.Trial``) for a template and a value of each of its dimensions."""
    name = trial.suggest_categorical(TEMPLATE, [space.template.name for space in spaces])
    space = next(space for space in spaces if space.template.name == name)
    values = {}
    for key, dim in space.dimensions.items():
        if dim.choices:
            labels = [_label(choice) for choice in dim.choices]
            values[key] = dim.choices[labels.index(trial.suggest_categorical(space.parameter(key), labels))]
        elif isinstance(dim.low, int):
            values[key] = trial.suggest_int(space.parameter(key), dim.low, dim.high, step=dim.step or 1)
        else:
            values[key] = trial.suggest_float(space.parameter(key), dim.low, dim.high, log=dim.log, step=dim.step)
    return space, values


def default_params(space: TemplateSpace) -> dict[str, Any]:
    """The Optuna parameters of ``space``'s own recipe: the template and each dimension's default value where the
    dimension holds it (the others are left to the sampler). A study tries these first, so that its best trial is
    never worse than training the template as it comes."""
    leaves = flatten_keys(space.hyper_parameters)
    params: dict[str, Any] = {TEMPLATE: space.template.name}
    for key, dim in space.dimensions.items():
        default = leaves[key]
        if dim.choices:
            if default in dim.choices:
                params[space.parameter(key)] = _label(default)
        elif dim.low <= default <= dim.high:
            params[space.parameter(key)] = default
    return params


def as_params(space: TemplateSpace, values: dict[str, Any]) -> list[str]:
    """``--param`` strings for ``otxlite train``: the fixed ones, then the trial's values."""
    return [*space.fixed, *(f"{key}={json.dumps(value)}" for key, value in values.items())]


def trial_values(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The template and the hyper-parameter values of a finished trial's Optuna ``params``."""
    template = params[TEMPLATE]
    prefix = f"{template}/"
    return template, {key.removeprefix(prefix): value for key, value in params.items() if key.startswith(prefix)}
