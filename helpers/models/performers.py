"""The performer CNNs every notebook explains, trained the way the papers' nets were: pre-trained on a broad task,
then fine-tuned per task.

- base: one net trained on every category plus background negatives (the stand-in for ImageNet pre-training;
  skipped when ``weights_path`` gives pretrained torchvision weights).
- single-category performers: the base fine-tuned with one logistic output, category vs. negatives.
- the multi-category performer: the base fine-tuned with a softmax over the categories (no negatives).
All are cached by config hash (``helpers.models.training.train_cached``), so notebooks 01-04 get the very nets that
notebook 00 trained without retraining them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..config import CATEGORIES, check_choice
from ..data import open_dataset
from ..data.arrays import PartArrays, load_arrays
from ..io import config_hash
from .nets import Performer, build_performer
from .training import TrainingRun, TrainSettings, accuracy, train_cached

PERFORMER_KEYS = ("dataset", "data_root", "data_seed", "weights_path", "multi_categories", "image_size", "net",
                  "n_train", "n_val", "n_test", "n_negatives_train", "n_negatives_test", "epochs_base",
                  "epochs_single", "epochs_multi", "batch_size", "lr", "lr_finetune")


def performer_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the performers and their data (a cache key for anything derived from them)."""
    return {key: settings[key] for key in PERFORMER_KEYS}


@dataclass
class SplitData:
    train: PartArrays
    val: PartArrays
    test: PartArrays
    key: dict[str, Any]


def _data(settings: dict[str, Any], categories: Sequence[str], negatives: bool) -> SplitData:
    """Train/val/test arrays of ``categories`` (plus background negatives when asked)."""
    splits = {}
    for split, n, n_neg in (
        ("train", settings["n_train"], settings["n_negatives_train"]),
        ("val", settings["n_val"], settings["n_val"]),
        ("test", settings["n_test"], settings["n_negatives_test"]),
    ):
        dataset = open_dataset(settings, split, categories, n, n_neg if negatives else 0)
        if not len(dataset):
            raise ValueError(f"the {split} split of {settings['dataset']} holds no image of {', '.join(categories)}; "
                             "pick categories that every split holds, or a dataset with more objects")
        splits[split] = (load_arrays(dataset), dataset.config())
    key = {split: config for split, (_, config) in splits.items()}
    return SplitData(splits["train"][0], splits["val"][0], splits["test"][0], key)


def single_category_data(settings: dict[str, Any], category: str) -> SplitData:
    """Category vs. background negatives."""
    return _data(settings, (check_choice("category", category, CATEGORIES),), negatives=True)


def multi_category_data(settings: dict[str, Any]) -> SplitData:
    """All of ``settings["multi_categories"]``, no negatives."""
    return _data(settings, settings["multi_categories"], negatives=False)


def _net_config(settings: dict[str, Any], outputs: int) -> dict[str, Any]:
    return {"arch": settings["net"], "outputs": outputs, "input_size": settings["image_size"],
            "weights": str(settings.get("weights_path"))}


def _build(settings: dict[str, Any], outputs: int) -> Performer:
    return build_performer(settings["net"], outputs, settings["image_size"], settings.get("weights_path"))


def _base_spec(settings: dict[str, Any], seed: int) -> tuple[dict[str, Any], SplitData, TrainSettings]:
    """Net config, data and training settings of the pre-trained base (categories + background, softmax)."""
    data = _data(settings, tuple(settings["multi_categories"]), negatives=True)
    run_settings = TrainSettings(epochs=settings["epochs_base"], batch_size=settings["batch_size"], lr=settings["lr"],
                                 loss="softmax", seed=seed)
    return _net_config(settings, len(settings["multi_categories"]) + 1), data, run_settings


def base_performer(settings: dict[str, Any], seed: int = 0, device: str = "auto") -> TrainingRun:
    """The pre-trained base: every category of ``multi_categories`` plus background, softmax over all of them."""
    net_config, data, run_settings = _base_spec(settings, seed)
    outputs = net_config["outputs"]
    return train_cached(lambda: _build(settings, outputs), net_config, data.train, data.key, run_settings, data.val,
                        device, name=f"base-{settings['net']}")


def _start_weights(settings: dict[str, Any], seed: int, device: str) -> tuple[dict[str, torch.Tensor], str]:
    """Weights a fine-tuned performer starts from (all but fc8) and an id of where they came from."""
    if settings.get("weights_path") is not None:  # pretrained torchvision weights: _build loads them
        return {}, f"weights:{settings['weights_path']}"
    net_config, data, run_settings = _base_spec(settings, seed)
    base = base_performer(settings, seed, device)
    state = {k: v for k, v in base.net.state_dict().items() if not k.startswith("classifier.fc8")}
    return state, config_hash({"net": net_config, "data": data.key, "settings": asdict(run_settings)})


def _fine_tune(settings: dict[str, Any], data: SplitData, outputs: int, loss: str, epochs: int, name: str,
               seed: int, device: str) -> TrainingRun:
    state, base_id = _start_weights(settings, seed, device)

    def build() -> Performer:
        net = _build(settings, outputs)
        net.load_state_dict(state, strict=False)
        return net

    run_settings = TrainSettings(epochs=epochs, batch_size=settings["batch_size"], lr=settings["lr_finetune"],
                                 loss=loss, seed=seed)
    return train_cached(build, {**_net_config(settings, outputs), "base": base_id}, data.train, data.key,
                        run_settings, data.val, device, name=f"{name}-{settings['net']}")


def single_category_performer(settings: dict[str, Any], category: str, seed: int = 0,
                              device: str = "auto") -> tuple[TrainingRun, SplitData]:
    """The performer for one category (logistic output: category vs. negatives) and its data."""
    data = single_category_data(settings, category)
    run = _fine_tune(settings, data, 1, "logistic", settings["epochs_single"], f"single-{category}", seed, device)
    return run, data


def multi_category_performer(settings: dict[str, Any], seed: int = 0, device: str = "auto"
                             ) -> tuple[TrainingRun, SplitData]:
    """The multi-category performer (softmax over ``multi_categories``) and its data."""
    data = multi_category_data(settings)
    outputs = len(settings["multi_categories"])
    return _fine_tune(settings, data, outputs, "softmax", settings["epochs_multi"], "multi", seed, device), data


def accuracy_on_test(run: TrainingRun, data: SplitData, device: str = "auto") -> float:
    """Accuracy of a performer on its test split."""
    return accuracy(run.net, data.test, device)
