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
INPUT_SIZE = "data.input_size"


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


def recipe_gigaflops(space: TemplateSpace, size: list[int] | None = None) -> float | None:
    """GFLOPs of one image's forward with ``space``'s recipe at input ``size`` (default: the recipe's own), scaled
    by area from the template's figure at its own size; None where the template does not state one."""
    template = space.template
    if template.gigaflops is None:
        return None
    own = flatten_keys(template.hyper_parameters)[INPUT_SIZE]
    size = size or flatten_keys(space.hyper_parameters)[INPUT_SIZE]
    return template.gigaflops * (size[0] * size[1]) / (own[0] * own[1])


def first_params(spaces: list[TemplateSpace]) -> list[dict[str, Any]]:
    """The Optuna parameters of the trials a new study runs first, one per template: its own recipe (the default
    value of each dimension that holds it; the others are left to the sampler), so that every template has a score
    soon and the study's best is never below the cheapest template's recipe. A recipe whose forward costs more than the
    cheapest template's is queued at the largest input size it searches that costs no more (else its smallest):
    Mask R-CNN's 1024 px recipe cannot finish in a CPU budget, and alone in its template at the successive halving
    rungs it would run uncompared to the deadline."""
    costs = [recipe_gigaflops(space) for space in spaces]
    cheapest = min((cost for cost in costs if cost is not None), default=None)
    queued = []
    for space, cost in zip(spaces, costs):
        leaves = flatten_keys(space.hyper_parameters)
        params: dict[str, Any] = {TEMPLATE: space.template.name}
        for key, dim in space.dimensions.items():
            if dim.choices:
                if leaves[key] in dim.choices:
                    params[space.parameter(key)] = _label(leaves[key])
            elif dim.low <= leaves[key] <= dim.high:
                params[space.parameter(key)] = leaves[key]
        sizes = space.dimensions.get(INPUT_SIZE)
        if sizes and cheapest is not None and cost is not None and cost > cheapest:
            ordered = sorted(sizes.choices, key=lambda size: size[0] * size[1])
            affordable = [size for size in ordered if recipe_gigaflops(space, size) <= cheapest]
            params[space.parameter(INPUT_SIZE)] = _label(affordable[-1] if affordable else ordered[0])
        queued.append(params)
    return queued


def as_params(space: TemplateSpace, values: dict[str, Any]) -> list[str]:
    """``--param`` strings for ``otxlite train``: the fixed ones, then the trial's values."""
    return [*space.fixed, *(f"{key}={json.dumps(value)}" for key, value in values.items())]


def trial_values(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The template and the hyper-parameter values of a finished trial's Optuna ``params``."""
    template = params[TEMPLATE]
    prefix = f"{template}/"
    return template, {key.removeprefix(prefix): value for key, value in params.items() if key.startswith(prefix)}
