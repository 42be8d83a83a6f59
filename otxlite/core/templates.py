"""Model templates: discovery, loading, validation, ``--param`` overrides and the ``hpo:`` search space.

A template is a small YAML file (see ``templates/``) naming an MMDetection config,
the hyper-parameters a user may change and the ranges ``otxlite tune`` searches. Nothing
here imports the OpenMMLab stack, so ``otxlite find`` and template errors stay fast.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from otxlite.core.errors import OtxliteError
from otxlite.families import FAMILIES, UnknownFamily, family_named
from otxlite.families.family import STRIDE, Family

TEMPLATES_ROOT = Path(__file__).resolve().parents[1] / "assets" / "templates"  # package data (top-level link: templates/)
REQUIRED_KEYS = ("model_template_id", "name", "task_type", "family", "model_config", "hyper_parameters")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")  # auto: mixed precision (fp16) on CUDA, fp32 on the CPU
AUGMENTATIONS = ("auto", "mosaic", "plain")  # data.augmentation of the mosaic recipe
# Hyper-parameters every template has without listing them; a template's own value wins.
DEFAULT_HYPER_PARAMETERS: dict[str, dict[str, Any]] = {
    "learning_parameters": {"precision": "auto"},
    "optimization": {"subset_size": 300, "preset": "mixed", "max_accuracy_drop": 0.01},  # otxlite optimize
    # small objects in large images: train on tiles, infer on the whole image plus tiles (otxlite.core.tiling)
    "tiling": {"enable": False, "tile_size": "auto", "overlap": 0.2, "full_image": False, "max_objects": 200,
               "iou_threshold": 0.5, "sampling_ratio": 1.0},
}


@dataclass(frozen=True)
class Template:
    """A loaded, validated model template."""

    path: Path
    model_template_id: str
    name: str
    task_type: str
    summary: str
    family: Family  # what the model is: masks, export, INT8 scopes, recipe (otxlite.families)
    model_config: Path
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    gigaflops: float | None = None
    size: float | None = None
    coco_checkpoint: str | None = None  # COCO-pretrained detector (URL or path) the training starts from
    hpo: dict[str, Dimension] = field(default_factory=dict)  # what ``otxlite tune`` searches, by dotted key

    @property
    def pretrained_start(self) -> str:
        """What training starts from when pretrained weights can be had: ``COCO`` or ``ImageNet`` (backbone)."""
        return "COCO" if self.coco_checkpoint else "ImageNet"


def template_paths() -> list[Path]:
    """All template files shipped with otxlite, sorted by path."""
    return sorted(TEMPLATES_ROOT.rglob("*.yaml"))


def list_templates() -> list[Template]:
    """Load every shipped template."""
    return [load_template_file(path) for path in template_paths()]


def load_template_file(path: Path) -> Template:
    """Load and validate one template YAML file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise OtxliteError(f"Cannot read template {path}: {err.strerror}.") from err
    except yaml.YAMLError as err:
        raise OtxliteError(f"Template {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise OtxliteError(f"Template {path} must be a YAML mapping with the keys {', '.join(REQUIRED_KEYS)}.")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise OtxliteError(f"Template {path} lacks the key(s) {', '.join(missing)}; every template needs {', '.join(REQUIRED_KEYS)}.")
    model_config = (path.parent / str(raw["model_config"])).resolve()
    if not model_config.is_file():
        raise OtxliteError(
            f"Template {path} names the model config '{raw['model_config']}', but {model_config} does not exist. "
            "Fix `model_config` (it is relative to the template file)."
        )
    if not isinstance(raw["hyper_parameters"], dict):
        raise OtxliteError(f"Template {path}: `hyper_parameters` must be a mapping.")
    try:
        family = family_named(str(raw["family"]))
    except UnknownFamily:
        raise OtxliteError(f"Template {path}: `family: {raw['family']}` is unknown; it must be one of "
                           f"{', '.join(FAMILIES)} (the model family of model_config).") from None
    hyper_parameters = with_defaults(raw["hyper_parameters"])
    for key, value in flatten_keys(hyper_parameters).items():
        check_allowed(key, value, source=f"Template {path}: hyper_parameters",
                      input_size_multiple=family.input_size_multiple)
    hpo = raw.get("hpo") or {}
    if not isinstance(hpo, dict):
        raise OtxliteError(f"Template {path}: `hpo` must be a mapping of hyper-parameter keys to ranges or choices.")
    return Template(
        path=path.resolve(),
        model_template_id=str(raw["model_template_id"]),
        name=str(raw["name"]),
        task_type=str(raw["task_type"]),
        summary=str(raw.get("summary", "")).strip(),
        family=family,
        model_config=model_config,
        hyper_parameters=hyper_parameters,
        gigaflops=raw.get("gigaflops"),
        size=raw.get("size"),
        coco_checkpoint=raw.get("coco_checkpoint"),
        hpo={key: parse_dimension(str(key), spec, hyper_parameters, f"Template {path}: hpo",
                                  family.input_size_multiple) for key, spec in hpo.items()},
    )


def load_template(reference: str) -> Template:
    """Load a template from a path, a template id or a template name (case-insensitive)."""
    path = Path(reference)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise OtxliteError(f"Template file {path} does not exist. Run `otxlite find` to list the shipped templates.")
        return load_template_file(path)
    templates = list_templates()
    wanted = reference.lower()
    for template in templates:
        if wanted in (template.model_template_id.lower(), template.name.lower()):
            return template
    names = [t.name for t in templates] + [t.model_template_id for t in templates]
    close = difflib.get_close_matches(reference, names, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise OtxliteError(
        f"Unknown template '{reference}'.{hint} Give a template YAML path, id or name; "
        f"`otxlite find` lists them: {', '.join(t.name for t in templates)}."
    )


def with_defaults(hyper_parameters: dict[str, Any]) -> dict[str, Any]:
    """``hyper_parameters`` with the ``DEFAULT_HYPER_PARAMETERS`` it does not set itself."""
    merged = copy.deepcopy(hyper_parameters)
    for section, defaults in DEFAULT_HYPER_PARAMETERS.items():
        if isinstance(merged.setdefault(section, {}), dict):
            for key, value in defaults.items():
                merged[section].setdefault(key, value)
    return merged


def flatten_keys(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Map every leaf of a nested mapping to its dotted key."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(flatten_keys(value, dotted + "."))
        else:
            leaves[dotted] = value
    return leaves


def parse_param(param: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` and parse VALUE as YAML."""
    key, sep, text = param.partition("=")
    if not sep or not key.strip():
        raise OtxliteError(f"--param '{param}' must look like KEY=VALUE, e.g. --param learning_parameters.num_iters=2.")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise OtxliteError(f"--param {key}: cannot parse the value '{text}' ({err}).") from err


def _check_type(key: str, default: Any, value: Any, source: str = "--param") -> Any:
    """Return ``value`` if it has the type of ``default`` (ints may stand for floats)."""
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, float):
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif isinstance(default, list):
        ok = isinstance(value, list) and len(value) == len(default) and all(
            isinstance(v, type(d)) or (isinstance(d, float) and isinstance(v, int)) for v, d in zip(value, default)
        )
    elif default is None:
        ok = True
    elif isinstance(default, str) and key in ALLOWED and ALLOWED[key].words:  # a word such as auto, or a number
        ok = isinstance(value, (str, int, float))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise OtxliteError(
            f"{source} {key}={value!r} has the wrong type: the template's value is {default!r} "
            f"({type(default).__name__}). Give a value of the same kind."
        )
    return value


@dataclass(frozen=True)
class Allowed:
    """The values a hyper-parameter may take: a closed/open numeric range, or a set of choices."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is not allowed
    high_open: bool = False  # high itself is not allowed
    choices: tuple[str, ...] = ()
    multiple_of: int = 1
    words: tuple[str, ...] = ()  # besides a number in the range (e.g. "auto")

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if self.multiple_of > 1:
            parts.append(f"a multiple of {self.multiple_of}")
        if self.words:
            return f"{' or '.join(self.words)}, or a number " + " and ".join(parts)
        return " and ".join(parts)

    def admits(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if isinstance(value, str):
            return value in self.words
        values = value if isinstance(value, list) else [value]
        return all(
            (self.low is None or (v > self.low if self.low_open else v >= self.low))
            and (self.high is None or (v < self.high if self.high_open else v <= self.high))
            and (self.multiple_of == 1 or v % self.multiple_of == 0)
            for v in values)


ALLOWED = {
    "learning_parameters.batch_size": Allowed(low=1),
    "learning_parameters.learning_rate": Allowed(low=0, low_open=True, high=10),
    "learning_parameters.learning_rate_warmup_iters": Allowed(low=0),
    "learning_parameters.num_iters": Allowed(low=1),
    "learning_parameters.num_workers": Allowed(low=0, high=64),
    "learning_parameters.early_stop_patience": Allowed(low=0),
    "learning_parameters.gradient_clip_norm": Allowed(low=0),
    "data.input_size": Allowed(low=STRIDE, high=8192, multiple_of=STRIDE),
    "postprocessing.confidence_threshold": Allowed(low=0, high=1),
    "optimization.subset_size": Allowed(low=1),
    "optimization.preset": Allowed(choices=("performance", "mixed")),
    "optimization.max_accuracy_drop": Allowed(low=0, high=1),
    "learning_parameters.precision": Allowed(choices=PRECISIONS),
    "data.augmentation": Allowed(choices=AUGMENTATIONS),
    "tiling.tile_size": Allowed(low=STRIDE, high=8192, words=("auto",)),  # a tile under the stride has no cell
    "tiling.overlap": Allowed(low=0, high=1, high_open=True),
    "tiling.max_objects": Allowed(low=1),
    "tiling.iou_threshold": Allowed(low=0, high=1),
    "tiling.sampling_ratio": Allowed(low=0, high=1),
}


def check_allowed(key: str, value: Any, source: str = "--param", input_size_multiple: int = STRIDE) -> None:
    """Raise a one-paragraph error if ``value`` is outside the allowed values of ``key`` (see ``ALLOWED``);
    ``input_size_multiple``: the rule of the template's family for ``data.input_size``."""
    allowed = ALLOWED.get(key)
    if key == "data.input_size":
        allowed = replace(allowed, multiple_of=input_size_multiple)
    if allowed is not None and not allowed.admits(value):
        raise OtxliteError(f"{source} {key}={value!r} is out of range: it must be {allowed.describe()}.")


def check_key(key: str, leaves: dict[str, Any], source: str) -> None:
    """Raise a one-paragraph error naming similar keys if ``key`` is not a hyper-parameter."""
    if key not in leaves:
        close = difflib.get_close_matches(key, list(leaves), n=3, cutoff=0.6)
        hint = f" Similar keys: {', '.join(close)}." if close else ""
        raise OtxliteError(f"{source}: unknown key '{key}'.{hint} Valid keys: {', '.join(leaves)}.")


def apply_overrides(hyper_parameters: dict[str, Any], params: list[str],
                    input_size_multiple: int = STRIDE) -> dict[str, Any]:
    """Return a copy of ``hyper_parameters`` with ``--param KEY=VALUE`` overrides applied."""
    result = copy.deepcopy(hyper_parameters)
    leaves = flatten_keys(hyper_parameters)
    for param in params:
        key, value = parse_param(param)
        check_key(key, leaves, "--param")
        value = _check_type(key, leaves[key], value)
        check_allowed(key, value, input_size_multiple=input_size_multiple)
        *parents, last = key.split(".")
        node = result
        for part in parents:
            node = node[part]
        node[last] = value
    return result


@dataclass(frozen=True)
class Dimension:
    """One hyper-parameter that ``otxlite tune`` searches: a number from ``low`` to ``high`` (``log``: log-uniform,
    as for learning rates; ``step``: a grid) when the hyper-parameter is a number, or one of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def spec(self) -> dict[str, Any]:
        """The YAML form, as written in a template's ``hpo:`` or after ``--hpo KEY=``."""
        if self.choices:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high} | ({"log": True} if self.log else {}) | (
            {"step": self.step} if self.step is not None else {})


DIMENSION_KEYS = {"low", "high", "log", "step", "choices"}


def parse_dimension(key: str, spec: Any, hyper_parameters: dict[str, Any], source: str,
                    input_size_multiple: int = STRIDE) -> Dimension:
    """A search dimension of hyper-parameter ``key`` from ``spec`` (``{low, high[, log][, step]}`` or
    ``{choices: [...]}``), every value checked as a ``--param`` is: key, type and allowed range."""
    leaves = flatten_keys(hyper_parameters)
    check_key(key, leaves, source)
    default = leaves[key]
    example = "{low: 0.001, high: 0.01, log: true} or {choices: [2, 4, 8]}"
    if not isinstance(spec, dict) or not spec or set(spec) - DIMENSION_KEYS or (
            ("choices" in spec) == bool({"low", "high"} & set(spec))):
        raise OtxliteError(f"{source} {key}: {spec!r} is not a search range; give {{low, high}} (numbers; "
                           f"log: true for a log-uniform range, step for a grid) or {{choices: [...]}}, e.g. {example}.")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices or set(spec) != {"choices"}:
            raise OtxliteError(f"{source} {key}: choices must be a non-empty list of values, alone, e.g. {example}.")
        checked = [_check_type(key, default, value, source) for value in choices]
        for value in checked:
            check_allowed(key, value, source, input_size_multiple)
        return Dimension(key, choices=tuple(checked))
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if not numeric:
        raise OtxliteError(f"{source} {key}: a range needs a numeric hyper-parameter (this one is {default!r}); "
                           "give {choices: [...]} instead.")
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log", False)
    low, high = (_check_type(key, default, value, source) for value in (low, high))
    if step is not None:
        step = _check_type(key, default, step, source)
    for value in (low, high):
        check_allowed(key, value, source, input_size_multiple)
    if not low < high:
        raise OtxliteError(f"{source} {key}: low ({low!r}) must be below high ({high!r}).")
    if not isinstance(log, bool) or (log and (low <= 0 or step is not None)):
        raise OtxliteError(f"{source} {key}: log must be true or false, and a log range needs low > 0 and no step.")
    if step is not None and not 0 < step <= high - low:
        raise OtxliteError(f"{source} {key}: step ({step!r}) must be above 0 and at most high - low.")
    return Dimension(key, low=low, high=high, log=log, step=step)
