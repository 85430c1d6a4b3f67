import pytest
import torch

from helpers import config


def test_profiles_resolve_with_overrides():
    settings = config.resolve("smoke", n_train=7, categories=None)
    assert settings["n_train"] == 7
    assert settings["categories"] == config.PROFILES["smoke"]["categories"]


def test_unknown_profile_names_the_allowed_values():
    with pytest.raises(ValueError, match="'smoke', 'teach', 'paper'"):
        config.resolve("fast")


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameter 'n_trian'"):
        config.resolve("smoke", n_trian=3)


def test_unknown_category_names_the_allowed_values():
    with pytest.raises(ValueError, match="'bird', 'cat', 'cow', 'dog', 'horse', 'sheep'"):
        config.resolve("smoke", categories=("bird", "zebra"))


@pytest.mark.parametrize("key", ["n_train", "image_size", "epochs_single", "lr"])
def test_negative_sizes_fail(key):
    with pytest.raises(ValueError, match=f"{key} must be > 0"):
        config.resolve("smoke", **{key: -1})


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("HELPERS_PROFILE", "paper")
    assert config.profile_name() == "paper"
    monkeypatch.setenv("HELPERS_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        config.profile_name()


def test_device_choice():
    assert config.get_device("cpu").type == "cpu"
    assert config.get_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="allowed values"):
        config.get_device("tpu")


def test_seed_everything_repeats_random_streams():
    config.seed_everything(3)
    a = torch.rand(4)
    config.seed_everything(3)
    assert torch.equal(a, torch.rand(4))


def test_sections_add_a_papers_knobs():
    section = {"smoke": {"tau": 0.1}, "teach": {"tau": 0.2}, "paper": {"tau": 0.3}}
    assert config.resolve("teach", sections=[section])["tau"] == 0.2
    assert config.resolve("teach", sections=[section], tau=0.5)["tau"] == 0.5
    with pytest.raises(ValueError, match="unknown parameter 'tau'"):
        config.resolve("teach", tau=0.5)
