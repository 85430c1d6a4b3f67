"""Notebook parameters: the parameters cells match the knob tables, papermill reads every knob with its type,
unknown or bad values fail at once with a message that says what to do, before any data is made."""

import json
import logging
import shutil
import time
from pathlib import Path

import pytest
import torch
from papermill import inspect_notebook
from real_roots import pascal_root

from helpers import config, parameters
from helpers import interpretable_training as icnn
from helpers.data.root_check import DatasetRootError
from helpers.parameters import ParameterError, check_values, notebook_settings

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _parameters_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    [cell] = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_generated_from_the_knob_table(path):
    assert _parameters_cell(path) == parameters.cell_source(path.stem)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_knob_with_its_type_and_no_warning(path, caplog):
    with caplog.at_level(logging.WARNING, logger="papermill"):
        found = inspect_notebook(str(path))
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    table = parameters.knobs(path.stem)
    assert list(found) == list(table)
    assert {name: p["inferred_type_name"] for name, p in found.items()} == {n: k.type for n, k in table.items()}
    assert all(p["help"] for p in found.values())


def test_values_are_checked_and_list_knobs_take_json():
    assert check_values("02", {"CATEGORIES": '["cow", "dog"]'}) == {"CATEGORIES": ["cow", "dog"]}
    assert check_values("02", {"CATEGORIES": "cow", "SEED": 3, "LR": None}) == {
        "CATEGORIES": ["cow"], "SEED": 3, "LR": None}
    assert check_values("01", {"NODES_PER_FILTER": '{"conv4_1": 3}'}) == {"NODES_PER_FILTER": {"conv4_1": 3}}
    bad = [
        ("04", "TEMPLATES", -3, "TEMPLATES must be an integer >= 1, got -3"),
        ("04", "K_FRACTION", 1.5, r"K_FRACTION must be in \(0, 1\], got 1.5"),
        ("04", "OR_RULE", "mean", "OR_RULE must be one of sum, max; got 'mean'"),
        ("02", "CATEGORIES", ["cat", "cta"], r"each of CATEGORIES must be one of .*got 'cta' \(did you mean 'cat'\?\)"),
        ("02", "CATEGORIES", '["cow", "dog"', "not a JSON list"),
        ("02", "CATEGORIES", ["cow", "cow"], "must not repeat"),
        ("02", "DECAY", "yes", "DECAY must be True or False"),
        ("00", "SEED", "1", "SEED must be an integer >= 0, got '1'"),
        ("00", "N_TRAIN", 2.5, "N_TRAIN must be an integer"),
        ("01", "TAU", float("nan"), "TAU must be a number > 0"),
        ("01", "NODES_PER_FILTER", {"conv4_1": 0}, r"NODES_PER_FILTER\['conv4_1'\] must be an integer >= 1"),
        ("00", "DEVICE", "gpu", "DEVICE must be one of auto, cpu, cuda"),
    ]
    for notebook, name, value, message in bad:
        with pytest.raises(ParameterError, match=message):
            check_values(notebook, {name: value})
    with pytest.raises(ParameterError, match="notebook 04 has no parameter 'DATASET'.*its parameters are: PROFILE"):
        check_values("04", {"DATASET": "cub200"})


def test_injected_names_are_read_from_papermills_cell():
    history = ["", "import os\nPROFILE = 'teach'\nSEED = 0", '# Parameters\nCATEGORYS = ["cow"]\nSEED = 2\n',
               "settings = 1"]
    assert parameters.injected_names(history) == ["CATEGORYS", "SEED"]


def _namespace(notebook: str, **values):
    knobs = parameters.knobs(notebook)
    namespace = {name: knob.default for name, knob in knobs.items()} | {"PROFILE": "smoke"} | values
    injected = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    return namespace | {"In": ["", parameters.cell_source(notebook), f"# Parameters\n{injected}\n"]}


def test_a_mistyped_parameter_fails_naming_the_allowed_ones():
    namespace = _namespace("00", CATEGORYS=["cow"])
    with pytest.raises(ParameterError, match=r"notebook 00 has no parameter 'CATEGORYS' \(did you mean CATEGORYS -> "
                                             r"CATEGORIES\?\); its parameters are: PROFILE, DATASET"):
        notebook_settings("00", namespace)


def test_settings_follow_the_knobs_and_activate_the_run():
    settings = notebook_settings("02", _namespace("02", CATEGORIES='["cow", "dog"]', GRAD_RATIO=2.0, SEED=4),
                                 [icnn.PROFILES])
    assert settings["categories"] == ("cow", "dog") and settings["icnn_grad_ratio"] == 2.0
    assert config.active_run() == config.ActiveRun("smoke", 4)


def test_dataset_root_and_weights_are_checked_before_any_data(tmp_path):
    cases = {
        "DATA_ROOT .* is set but DATASET is 'synthetic'": {"DATA_ROOT": str(tmp_path)},
        "DATASET 'pascal_part' needs DATA_ROOT": {"DATASET": "pascal_part"},
        "WEIGHTS_PATH is set but NET is 'small_vgg'": {"WEIGHTS_PATH": str(tmp_path / "w.pth")},
    }
    for message, values in cases.items():
        with pytest.raises(ParameterError, match=message):
            notebook_settings("00", _namespace("00", **values))
    begin = time.monotonic()
    with pytest.raises(DatasetRootError, match="Pascal-Part: cannot read the dataset root"):
        notebook_settings("00", _namespace("00", DATASET="pascal_part", DATA_ROOT=str(tmp_path / "nothing")))
    assert time.monotonic() - begin < 5


def test_bad_weights_files_are_named_with_what_was_expected(tmp_path):
    missing = tmp_path / "vgg16.pth"
    with pytest.raises(ParameterError, match=f"WEIGHTS_PATH {missing} does not exist; expected a torchvision state "
                                             "dict for vgg16"):
        parameters.check_weights(str(missing), "vgg16")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not a checkpoint" * 10)
    with pytest.raises(ParameterError) as error:
        parameters.check_weights(str(corrupt), "vgg16")
    assert f"WEIGHTS_PATH {corrupt} could not be read as a PyTorch checkpoint" in str(error.value)
    assert "expected a torchvision state dict for vgg16" in str(error.value)
    assert "weights_only" not in str(error.value), "never advice to disable safe loading"
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(ParameterError, match="holds no torchvision vgg16 weights"):
        parameters.check_weights(str(other), "vgg16")
    good = tmp_path / "good.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, good)
    parameters.check_weights(str(good), "vgg16")
    legacy = tmp_path / "legacy.pth"  # the pre-zip format: read, not memory-mapped
    torch.save({"features.0.weight": torch.zeros(1)}, legacy, _use_new_zipfile_serialization=False)
    parameters.check_weights(str(legacy), "vgg16")


def test_real_format_root_passes_the_check(tmp_path):
    root = pascal_root(tmp_path / "pascal")
    settings = notebook_settings("00", _namespace("00", DATASET="pascal_part", DATA_ROOT=str(root),
                                                  CATEGORIES=["dog"]))
    assert settings["dataset"] == "pascal_part" and settings["data_root"] == str(root)
    shutil.rmtree(root / "Annotations_Part")
    with pytest.raises(DatasetRootError, match="Annotations_Part is missing"):
        notebook_settings("00", _namespace("00", DATASET="pascal_part", DATA_ROOT=str(root), CATEGORIES=["dog"]))


def test_net_and_part_choices_follow_the_code():
    from helpers.data.synthetic import PART_NAMES
    from helpers.models import nets

    assert parameters.ARCHITECTURES == nets.ARCHITECTURES
    shared = set.intersection(*(set(parts) for parts in PART_NAMES.values()))
    assert set(parameters.SHARED_PARTS) == shared, "PART offers exactly the parts every category has"
