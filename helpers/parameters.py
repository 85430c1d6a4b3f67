"""Every notebook's knobs: name, type, help, the setting each overrides, and how its value is checked.

The tables here are the single source of the notebooks' ``parameters`` cells (:func:`cell_source`; a test keeps the
notebooks in step), of the grid-file checks of :mod:`helpers.batch` and of :func:`notebook_settings`, the first call of
every notebook. That call rejects a parameter papermill injected that the notebook does not have (naming the allowed
ones), checks every value (type, range, allowed values; list knobs also take a JSON string such as
``'["cow", "dog"]'``), resolves the profile and checks the dataset root and the weights file before any data is made.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .config import CATEGORIES, DATASETS, DEVICES, PROFILES

Check = Callable[[str, Any], Any]  # (knob name, value) -> the value to use; raises ParameterError
INJECTED_MARK = "# Parameters"  # papermill's first line of the cell it injects
ARCHITECTURES = ("small_vgg", "vgg16", "alexnet")
PRETRAINED = ("vgg16", "alexnet")
SHARED_PARTS = ("head", "torso", "tail")  # the parts every category has


class ParameterError(ValueError):
    """A notebook parameter that is unknown or has a value the notebook cannot use."""


# ----------------------------------------------------------------------------------------------------------------
# Value checks


def _number(name: str, value: Any, integral: bool, minimum: float, strict: bool) -> Any:
    kind = "an integer" if integral else "a number"
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    ok_type = isinstance(value, int) if integral else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integral and not math.isfinite(value)):
        raise ParameterError(f"{name} must be {kind} {bound}, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise ParameterError(f"{name} must be {kind} {bound}, got {value!r}")
    return value


def integer(minimum: int = 1) -> Check:
    return lambda name, value: _number(name, value, True, minimum, False)


def positive() -> Check:
    return lambda name, value: _number(name, value, False, 0, True)


def fraction() -> Check:
    """A number in (0, 1]."""
    def check(name: str, value: Any) -> Any:
        _number(name, value, False, 0, True)
        if value > 1:
            raise ParameterError(f"{name} must be in (0, 1], got {value!r}")
        return value
    return check


def flag() -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ParameterError(f"{name} must be True or False, got {value!r}")
        return value
    return check


def choice(allowed: Sequence[str]) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in allowed:
            hint = difflib.get_close_matches(str(value), allowed, 1)
            raise ParameterError(f"{name} must be one of {', '.join(allowed)}; got {value!r}"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return value
    return check


def path() -> Check:
    def check(name: str, value: Any) -> Any:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ParameterError(f"{name} must be a path (a string), got {value!r}")
        return str(Path(value).expanduser())
    return check


def _listed(name: str, value: Any) -> list[Any]:
    """A list from a list, a tuple, a JSON list in a string, or one plain string (a list of one)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise ParameterError(f"{name}: {value!r} is not a JSON list ({error.msg})") from None
        else:
            value = [text]
    if not isinstance(value, (list, tuple)) or not value:
        raise ParameterError(f"{name} must be a non-empty list, got {value!r}")
    return list(value)


def names(allowed: Sequence[str] | None = None) -> Check:
    """A non-empty list of distinct strings (from ``allowed`` when given)."""
    def check(name: str, value: Any) -> Any:
        items = _listed(name, value)
        for item in items:
            if not isinstance(item, str):
                raise ParameterError(f"{name} must list strings, got {item!r}")
            if allowed is not None:
                choice(allowed)(f"each of {name}", item)
        if len(set(items)) != len(items):
            raise ParameterError(f"{name} must not repeat an item, got {items}")
        return items
    return check


def count_or_mapping() -> Check:
    """An integer >= 1, or a mapping (dict or JSON object) of names to integers >= 1."""
    def check(name: str, value: Any) -> Any:
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ParameterError(f"{name}: {value!r} is not a JSON object ({error.msg})") from None
        if isinstance(value, Mapping):
            if not value:
                raise ParameterError(f"{name} must not be an empty mapping")
            return {str(key): integer(1)(f"{name}[{key!r}]", count) for key, count in value.items()}
        return integer(1)(name, value)
    return check


# ----------------------------------------------------------------------------------------------------------------
# The knobs of each notebook


@dataclass(frozen=True)
class Knob:
    """One parameter of a notebook: ``setting`` is the key of the resolved settings it overrides (None: the
    notebook reads it itself); ``default`` is its value in the parameters cell (None: from the profile)."""

    name: str
    type: str
    help: str
    check: Check
    setting: str | None = None
    default: Any = None


def _profile() -> Knob:
    return Knob("PROFILE", "str", " | ".join(PROFILES), choice(tuple(PROFILES)))


def _run() -> list[Knob]:
    return [Knob("SEED", "int", "seed of everything random in the notebook", integer(0), default=0),
            Knob("DEVICE", "str", " | ".join(DEVICES), choice(DEVICES), default="auto")]


def _data(nets_help: str) -> list[Knob]:
    return [
        Knob("DATASET", "str", f"{DATASETS[0]} (default) | {' | '.join(DATASETS[1:])}", choice(DATASETS), "dataset"),
        Knob("DATA_ROOT", "str", "folder of a real dataset (with DATASET; see data/README.md)", path(), "data_root"),
        Knob("WEIGHTS_PATH", "str", f"local torchvision checkpoint for {nets_help} (never downloaded)", path(),
             "weights_path"),
        Knob("NET", "str", " | ".join(ARCHITECTURES), choice(ARCHITECTURES), "net"),
    ]


KNOBS: dict[str, tuple[Knob, ...]] = {
    "00": (
        _profile(), *_data("vgg16 / alexnet"),
        Knob("CATEGORIES", "list[str]", "categories of the single-category performers", names(CATEGORIES),
             "categories"),
        Knob("IMAGE_SIZE", "int", "side of the square input images in pixels", integer(16), "image_size"),
        Knob("N_TRAIN", "int", "training images per category (and as many negatives)", integer(1), "n_train"),
        Knob("EPOCHS_BASE", "int", "epochs of the base net (the stand-in for ImageNet pre-training)", integer(1),
             "epochs_base"),
        Knob("EPOCHS_SINGLE", "int", "fine-tuning epochs of each single-category performer", integer(1),
             "epochs_single"),
        Knob("EPOCHS_MULTI", "int", "fine-tuning epochs of the multi-category performer", integer(1), "epochs_multi"),
        *_run(),
    ),
    "01": (
        _profile(), *_data("vgg16"),
        Knob("CATEGORY", "str", "the category whose performer is explained (teach: bird)", choice(CATEGORIES),
             "eg_category"),
        Knob("LAYERS", "list[str]", 'conv layers of the graph, e.g. ["conv3_1", "conv3_2", "conv4_1", "conv4_2"]',
             names(), "eg_layers"),
        Knob("NODES_PER_FILTER", "int|dict", "N_{L,d}: an int, or a dict layer -> int", count_or_mapping(),
             "eg_nodes_per_filter"),
        Knob("PARENTS", "int", "M, parents of each node in the layer above", integer(1), "eg_parents"),
        Knob("ITERATIONS", "int", "T, EM iterations per layer", integer(1), "eg_iterations"),
        Knob("TAU", "float", "density of the noise component V_none", positive(), "eg_tau"),
        Knob("IMAGES", "int", "training images the graph is mined from", integer(2), "eg_images"),
        Knob("FLIP", "bool", "flip alignment: explain each image as is or mirrored (the authors' code does)", flag(),
             "eg_flip"),
        Knob("INVERTER_EPOCHS", "int", "training epochs of the up-convolutional decoder of Fig. 7", integer(1),
             "eg_inverter_epochs"),
        Knob("ABLATION", "bool", "also mine the graph without flip alignment (default: teach only)", flag()),
        *_run(),
    ),
    "02": (
        _profile(), *_data("vgg16 / alexnet"),
        Knob("CATEGORIES", "list[str]", "single-category tasks (teach: bird, cat, horse)", names(CATEGORIES),
             "categories"),
        Knob("EPOCHS_SINGLE", "int", "fine-tuning epochs of the ordinary and interpretable single-category nets",
             integer(1), "icnn_epochs_single"),
        Knob("EPOCHS_MULTI", "int", "... and of the multi-category nets", integer(1), "icnn_epochs_multi"),
        Knob("LR", "float", "peak learning rate of the fine-tuning", positive(), "icnn_lr"),
        Knob("GRAD_RATIO", "float", "filter-loss gradient / task gradient at each interpretable layer (Eq. 3 weight)",
             positive(), "icnn_grad_ratio"),
        Knob("DECAY", "bool", "weight the filter loss by 1 / epoch", flag(), "icnn_decay"),
        Knob("MU", "str", "centroid (official code) | argmax (paper text): how the mask layer picks the part "
             "position mu", choice(("centroid", "argmax")), "icnn_mu"),
        Knob("REINIT_HEAD", "bool", "re-initialise the FC layers before fine-tuning (the paper does)", flag(),
             "icnn_reinit_head"),
        *_run(),
    ),
    "03": (
        _profile(), *_data("vgg16 / alexnet"),
        Knob("CATEGORIES", "list[str]", "the single-category performers to explain", names(CATEGORIES),
             "categories"),
        Knob("EXPLAINER_EPOCHS_SINGLE", "int", "distillation epochs per single-category performer", integer(1),
             "explainer_epochs_single"),
        Knob("EXPLAINER_EPOCHS_MULTI", "int", "... for the multi-category performer", integer(1),
             "explainer_epochs_multi"),
        Knob("EXPLAINER_EPOCHS_CLS", "int", "Explainer+cls fine-tuning epochs (this baseline uses labels)",
             integer(1), "explainer_epochs_cls"),
        Knob("EXPLAINER_ETA", "float", "eta, the weight of -log p in Eq. (1), in units where c is 1 in "
             "lambda_l: c / E||x*_l||", positive(), "explainer_eta"),
        Knob("EXPLAINER_FILTER_RATIO", "float", "r in lambda_f: r / N * E||dLoss_rec/dx_f|| / E||dLoss_f/dx_f|| "
             "(paper: 1/300)", positive(), "explainer_filter_ratio"),
        Knob("EXPLAINER_MU", "str", "mask centre: argmax | centroid (the official code's activation-weighted "
             "centroid)", choice(("argmax", "centroid")), "explainer_mu"),
        Knob("EXPLAINER_LR", "float", "learning rate of the distillation", positive(), "explainer_lr"),
        Knob("EXPLAINER_LR_CLS", "float", "learning rate of the Explainer+cls fine-tuning", positive(),
             "explainer_lr_cls"),
        *_run(),
    ),
    "04": (
        _profile(),
        Knob("CATEGORIES", "list[str]", "categories to localize heads in (one explanatory graph each; synthetic "
             "data)", names(CATEGORIES), "categories"),
        Knob("PART", "str", f"the semantic part (paper: head): {' | '.join(SHARED_PARTS)}", choice(SHARED_PARTS),
             "aog_part"),
        Knob("TEMPLATES", "int", "m: annotated crops, one part template each (paper: 3)", integer(1),
             "aog_templates"),
        Knob("K_FRACTION", "float", "K per template as a fraction of the graph's nodes (paper: 0.1 ILSVRC/CUB, "
             "0.4 Pascal)", fraction(), "aog_k_fraction"),
        Knob("VOTE_SPREAD", "float", "std of a node's vote (normalised by the crop size)", positive(),
             "aog_vote_spread"),
        Knob("SELECT_SPREAD", "float", "s of the selection rank S_V exp(-|delta_V|^2 / 2 s^2)", positive(),
             "aog_select_spread"),
        Knob("OR_RULE", "str", "sum (templates as a mixture) | max (best template)", choice(("sum", "max")),
             "aog_or_rule"),
        Knob("DRAWS", "int", "random draws of the annotations averaged over", integer(1), "aog_draws"),
        *_run(),
    ),
    "05": (_profile(),),
}


def notebook_id(notebook: str) -> str:
    """'01' from '01', '01_explanatory_graph' or 'notebooks/01_explanatory_graph.ipynb'."""
    key = Path(notebook).name[:2]
    if key not in KNOBS:
        raise ParameterError(f"no notebook {notebook!r}; notebooks: {', '.join(KNOBS)}")
    return key


def knobs(notebook: str) -> dict[str, Knob]:
    """The knobs of ``notebook`` by name."""
    return {knob.name: knob for knob in KNOBS[notebook_id(notebook)]}


def cell_source(notebook: str) -> str:
    """The text of the notebook's ``parameters`` cell, one ``NAME = default  # type: T  help`` line per knob (the
    form ``papermill --help-notebook`` reads)."""
    lines = ["import os", ""]
    for knob in KNOBS[notebook_id(notebook)]:
        value = 'os.environ.get("HELPERS_PROFILE", "teach")' if knob.name == "PROFILE" else json.dumps(knob.default)
        value = "None" if knob.default is None and knob.name != "PROFILE" else value
        lines.append(f"{knob.name} = {value}  # type: {knob.type}  {knob.help}")
    return "\n".join(lines)


def unknown_error(notebook: str, unknown: Sequence[str]) -> ParameterError:
    allowed = list(knobs(notebook))
    hints = [f"{name} -> {match[0]}" for name in unknown
             if (match := difflib.get_close_matches(name.upper(), allowed, 1))]
    return ParameterError(
        f"notebook {notebook_id(notebook)} has no parameter {', '.join(map(repr, unknown))}"
        + (f" (did you mean {'; '.join(hints)}?)" if hints else "")
        + f"; its parameters are: {', '.join(allowed)}")


def check_values(notebook: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` checked against the notebook's knobs (None = from the profile stays None); unknown names fail."""
    table = knobs(notebook)
    unknown = [name for name in values if name not in table]
    if unknown:
        raise unknown_error(notebook, unknown)
    return {name: None if value is None else table[name].check(name, value) for name, value in values.items()}


def injected_names(history: Sequence[str]) -> list[str]:
    """Names assigned by the cells papermill injected (their source starts with ``# Parameters``)."""
    found: list[str] = []
    for source in history:
        if not source.lstrip().startswith(INJECTED_MARK):
            continue
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign):
                found += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------------------------------------------
# Dataset root and weights, checked before any data is made


def check_weights(path_: str, net: str) -> None:
    """Fail unless ``path_`` is a readable torchvision state dict for ``net`` (loaded memory-mapped, safely)."""
    import torch

    weights = Path(path_)
    expected = (f"a torchvision state dict for {net} saved with torch.save (for example the file "
                f"{'vgg16-397923af.pth' if net == 'vgg16' else 'alexnet-owt-7be5be79.pth'} from torchvision)")
    if net not in PRETRAINED:
        raise ParameterError(f"WEIGHTS_PATH is set but NET is {net!r}, which has no pretrained weights; "
                             f"use NET {' or '.join(PRETRAINED)}, or leave WEIGHTS_PATH unset")
    if not weights.is_file():
        raise ParameterError(f"WEIGHTS_PATH {weights} does not exist; expected {expected}. Nothing is downloaded "
                             "at run time: copy the file to this machine and pass its path")
    try:  # a zip-format checkpoint (torch.save's default) is mapped, not read; an old-format one is read
        state = torch.load(weights, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(weights))
    except Exception as error:  # any unreadable file gets the same message; torch's own may advise unsafe loading
        raise ParameterError(f"WEIGHTS_PATH {weights} could not be read as a PyTorch checkpoint "
                             f"({type(error).__name__}); expected {expected}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not any(str(key).startswith("features.") for key in state):
        raise ParameterError(f"WEIGHTS_PATH {weights} holds no torchvision {net} weights (no 'features.*' "
                             f"tensors); expected {expected}")


def check_sources(settings: Mapping[str, Any]) -> None:
    """The dataset, its root and the weights file of ``settings``, checked before any data is generated."""
    dataset, root = settings["dataset"], settings.get("data_root")
    if root is not None and dataset == "synthetic":
        raise ParameterError(f"DATA_ROOT {root} is set but DATASET is 'synthetic' (the default): say which "
                             "dataset the folder holds with DATASET cub200 | pascal_part | ilsvrc_part")
    if dataset != "synthetic":
        if root is None:
            raise ParameterError(f"DATASET {dataset!r} needs DATA_ROOT, the folder holding it (see data/README.md)")
        from .data import open_dataset

        open_dataset(dict(settings), "train", settings["categories"], 1)  # the reader checks the root's layout
    if settings.get("weights_path") is not None:
        check_weights(settings["weights_path"], settings["net"])


# ----------------------------------------------------------------------------------------------------------------
# The notebooks' entry point


def notebook_settings(notebook: str, namespace: Mapping[str, Any],
                      sections: Sequence[Mapping[str, Mapping[str, Any]]] = ()) -> dict[str, Any]:
    """Check the knobs a notebook holds in ``namespace`` (its ``globals()``) and return its resolved settings.

    Fails at once, before any data is made, on a parameter papermill injected that the notebook lacks, on a value
    out of type or range, on a dataset root that cannot be read and on a weights file that is not what ``NET``
    needs. Also tells :mod:`helpers.config` which profile and seed are active (the figures are stamped with them).
    """
    table = knobs(notebook)
    unknown = [name for name in injected_names(namespace.get("In", ())) if name not in table]
    if unknown:
        raise unknown_error(notebook, unknown)
    values = check_values(notebook, {name: namespace[name] for name in table if name in namespace})
    profile = values["PROFILE"]
    overrides = {knob.setting: values.get(knob.name) for knob in table.values() if knob.setting}
    settings = config.resolve(profile, sections, **overrides)
    check_sources(settings)
    config.activate(profile, values.get("SEED", 0))
    return settings
