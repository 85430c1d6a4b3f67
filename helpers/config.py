"""Profiles, seeding, device choice, project paths and progress bars.

Every notebook starts from a profile (``smoke`` | ``teach`` | ``paper``) and lets papermill override any knob.
A knob left at ``None`` in a notebook's parameters cell is taken from the profile (:func:`resolve`).
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

CATEGORIES = ("bird", "cat", "cow", "dog", "horse", "sheep")
DATASETS = ("synthetic", "cub200", "pascal_part", "ilsvrc_part")
DEVICES = ("auto", "cpu", "cuda")

# One entry per profile. Sizes are per category (positives) unless the name says otherwise.
# Performers: a base net is trained on `multi_categories` + background (`epochs_base`, the stand-in for ImageNet
# pre-training), then fine-tuned per task (`epochs_single`, `epochs_multi`, at `lr_finetune`).
_COMMON: dict[str, Any] = {
    "dataset": "synthetic",
    "data_root": None,
    "data_seed": 0,
    "weights_path": None,
    "multi_categories": CATEGORIES,
}
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        **_COMMON,
        "image_size": 64,
        "net": "small_vgg",
        "categories": ("bird", "cat"),
        "multi_categories": ("bird", "cat", "dog"),
        "n_train": 32,
        "n_val": 8,
        "n_test": 16,
        "n_negatives_train": 32,
        "n_negatives_test": 16,
        "epochs_base": 1,
        "epochs_single": 1,
        "epochs_multi": 1,
        "batch_size": 32,
        "lr": 2e-3,
        "lr_finetune": 1e-3,
    },
    "teach": {
        **_COMMON,
        "image_size": 64,
        "net": "small_vgg",
        "categories": ("bird", "cat", "horse"),
        "n_train": 640,
        "n_val": 128,
        "n_test": 256,
        "n_negatives_train": 640,
        "n_negatives_test": 256,
        "epochs_base": 10,
        "epochs_single": 4,
        "epochs_multi": 2,
        "batch_size": 64,
        "lr": 2e-3,
        "lr_finetune": 1e-3,
    },
    "paper": {
        **_COMMON,
        "image_size": 224,
        "net": "vgg16",
        "categories": CATEGORIES,
        "n_train": 2000,
        "n_val": 300,
        "n_test": 600,
        "n_negatives_train": 2000,
        "n_negatives_test": 600,
        "epochs_base": 20,
        "epochs_single": 10,
        "epochs_multi": 10,
        "batch_size": 32,
        "lr": 1e-3,
        "lr_finetune": 1e-4,
    },
}
_POSITIVE = ("image_size", "n_train", "n_test", "epochs_base", "epochs_single", "epochs_multi", "batch_size", "lr",
             "lr_finetune")
_NON_NEGATIVE = ("n_val", "n_negatives_train", "n_negatives_test", "data_seed")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming the allowed values."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed values: {', '.join(map(repr, allowed))}")
    return value


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Raise a ValueError unless ``value`` is a positive number (or zero when ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def check_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """Validate category names against :data:`CATEGORIES`; returns them as a tuple."""
    if isinstance(categories, str):
        categories = (categories,)
    categories = tuple(categories)
    if not categories:
        raise ValueError(f"at least one category is needed; allowed values: {', '.join(CATEGORIES)}")
    for category in categories:
        check_choice("category", category, CATEGORIES)
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories must not repeat, got {categories}")
    return categories


def profile_name(name: str | None = None) -> str:
    """The active profile: ``name`` if given, else ``$HELPERS_PROFILE``, else ``teach``."""
    name = name or os.environ.get("HELPERS_PROFILE", "teach")
    return check_choice("profile", name, PROFILES)


def resolve(profile: str, sections: Sequence[Mapping[str, Mapping[str, Any]]] = (), **overrides: Any
            ) -> dict[str, Any]:
    """The profile's settings with every non-None override applied.

    ``sections`` add a paper's own knobs: each maps a profile name to that paper's defaults (e.g.
    ``helpers.interpretable.PROFILES``). Unknown knobs fail, so a typo in a papermill parameter does not pass
    silently.
    """
    settings = dict(PROFILES[check_choice("profile", profile, PROFILES)])
    for section in sections:
        settings.update(section[profile])
    for key, value in overrides.items():
        if key not in settings:
            raise ValueError(f"unknown parameter {key!r}; allowed: {', '.join(sorted(settings))}")
        if value is not None:
            settings[key] = value
    settings["categories"] = check_categories(settings["categories"])
    settings["multi_categories"] = check_categories(settings["multi_categories"])
    check_choice("dataset", settings["dataset"], DATASETS)
    for key in _POSITIVE:
        check_positive(key, settings[key])
    for key in _NON_NEGATIVE:
        check_positive(key, settings[key], allow_zero=True)
    return settings


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask torch for deterministic kernels where it can."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; ``"cuda"`` without a GPU fails with advice."""
    if isinstance(device, torch.device):
        return device
    check_choice("device", device, DEVICES)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but torch sees no GPU; use device='auto' or 'cpu'")
    return torch.device(device)


def data_dir() -> Path:
    """Where generated data and caches live (``$HELPERS_DATA_DIR`` or ``<project>/data``)."""
    return Path(os.environ.get("HELPERS_DATA_DIR", PROJECT_ROOT / "data"))


def cache_dir(kind: str) -> Path:
    """``data/cache/<kind>/``, created on demand."""
    path = data_dir() / "cache" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ActiveRun:
    """The profile and seed of the notebook running in this process (figures are filed and stamped with them)."""

    profile: str
    seed: int


_ACTIVE: list[ActiveRun] = []


def activate(profile: str, seed: int) -> ActiveRun:
    """Record the profile and seed of the running notebook (:func:`helpers.parameters.notebook_settings` does)."""
    _ACTIVE[:] = [ActiveRun(check_choice("profile", profile, PROFILES), int(seed))]
    return _ACTIVE[0]


def active_run() -> ActiveRun | None:
    """What :func:`activate` recorded last, or None."""
    return _ACTIVE[0] if _ACTIVE else None


def figures_dir(profile: str | None = None) -> Path:
    """``$HELPERS_FIGURES_DIR`` or ``<project>/figures/<profile>`` (default: the active run's profile, else
    :func:`profile_name`), created on demand, so that runs of one profile never overwrite another's figures."""
    if "HELPERS_FIGURES_DIR" in os.environ:
        path = Path(os.environ["HELPERS_FIGURES_DIR"])
    else:
        run = active_run()
        path = PROJECT_ROOT / "figures" / (profile or (run.profile if run else profile_name()))
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(profile: str) -> Path:
    """``$HELPERS_RESULTS_DIR/<profile>`` (default ``<project>/results/<profile>``), created on demand."""
    path = Path(os.environ.get("HELPERS_RESULTS_DIR", PROJECT_ROOT / "results")) / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def published_results_dir(profile: str) -> Path:
    """Where the results of completed runs of ``profile`` are read from: ``$HELPERS_PUBLISHED_DIR/<profile>``
    (set by the batch runner for the notebooks it runs), else :func:`results_dir`."""
    if "HELPERS_PUBLISHED_DIR" in os.environ:
        return Path(os.environ["HELPERS_PUBLISHED_DIR"]) / profile
    return results_dir(profile)


def batch_slices(length: int, batch_size: int) -> list[slice]:
    """Consecutive index ranges of at most ``batch_size`` covering ``length`` items; one empty range when there is
    no item, so that a pass over no image still yields maps of the right shape (and metrics of them NaN)."""
    return [slice(start, min(start + batch_size, length)) for start in range(0, max(length, 1), batch_size)]


def progress_disabled() -> bool:
    """Progress bars are off when ``$HELPERS_QUIET`` is set or when stderr is neither a TTY nor a notebook."""
    if os.environ.get("HELPERS_QUIET"):
        return True
    return not (sys.stderr.isatty() or "ipykernel" in sys.modules)


def progress(iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
    """A ``tqdm.auto`` progress bar that stays quiet under CI (see :func:`progress_disabled`)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", progress_disabled())
    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
