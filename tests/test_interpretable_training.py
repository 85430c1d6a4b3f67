"""Tests of helpers.interpretable_training: the ordinary-vs-interpretable fine-tuning protocol and its evaluation
(interpretable CNN paper, Sec. 5), on a tiny net and tiny data."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import config
from helpers import interpretable_training as icnn
from helpers.data.arrays import materialize
from helpers.data.synthetic import multi_category, single_category
from helpers.interpretable import interpretable_layers
from helpers.models.features import FeatureRecorder
from helpers.models.geometry import LayerGeometry
from helpers.models.nets import small_vgg
from helpers.models.performers import SplitData
from helpers.models.training import TrainingRun, classification_loss

SIZE = 32
SETTINGS = {**config.resolve("smoke", [icnn.PROFILES]), "batch_size": 16}


pytestmark = pytest.mark.usefixtures("one_thread")


def _performer(outputs: int = 1):
    torch.manual_seed(0)
    return small_vgg(outputs, input_size=SIZE, widths=(4, 8), convs_per_block=(1, 1), fc_dim=16).eval()


@pytest.fixture(scope="module")
def single_data() -> SplitData:
    train = materialize(single_category("bird", "train", 16, 16, SIZE, seed=0), workers=1)
    test = materialize(single_category("bird", "test", 12, 12, SIZE, seed=0), workers=1)
    return SplitData(train, test, test, {"tiny": "bird"})


@pytest.fixture(scope="module")
def multi_data() -> SplitData:
    train = materialize(multi_category(("bird", "cat"), "train", 8, SIZE, seed=0), workers=1)
    test = materialize(multi_category(("bird", "cat"), "test", 8, SIZE, seed=0), workers=1)
    return SplitData(train, test, test, {"tiny": "bird+cat"})


def test_profiles_resolve_and_name_only_icnn_knobs():
    for profile in ("smoke", "teach", "paper"):
        settings = config.resolve(profile, [icnn.PROFILES])
        assert set(icnn.icnn_settings(settings)) == set(icnn.PROFILES[profile])
    assert all(key.startswith("icnn_") for section in icnn.PROFILES.values() for key in section)
    with pytest.raises(ValueError, match="unknown parameter"):
        config.resolve("smoke", [icnn.PROFILES], icnn_grad_ration=0.2)


def test_ordinary_and_interpretable_start_from_identical_weights():
    performer = _performer()
    ordinary = icnn.start_net(performer, "ordinary", SETTINGS, seed=3)
    interpretable = icnn.start_net(performer, "interpretable", SETTINGS, seed=3)
    state_o, state_i = ordinary.state_dict(), interpretable.state_dict()
    assert state_o.keys() == state_i.keys()
    assert all(torch.equal(state_o[key], state_i[key]) for key in state_o)
    assert icnn.weights_digest(ordinary) == icnn.weights_digest(interpretable)
    # the performer's conv layers are kept, the head is re-initialised (Sec. 5), the performer is untouched
    assert torch.equal(ordinary.layer("conv2_1").weight, performer.layer("conv2_1").weight)
    assert not torch.equal(ordinary.layer("fc8").weight, performer.layer("fc8").weight)
    assert "conv2_2" not in performer.layer_names() and ordinary.top_conv == "conv2_2"
    kept = icnn.start_net(performer, "ordinary", {**SETTINGS, "icnn_reinit_head": False}, seed=3)
    assert torch.equal(kept.layer("fc8").weight, performer.layer("fc8").weight)
    assert all(not layer.use_masks and not layer.use_loss for layer in interpretable_layers(ordinary).values())
    assert all(layer.use_masks and layer.use_loss for layer in interpretable_layers(interpretable).values())
    with pytest.raises(ValueError, match="kind"):
        icnn.start_net(performer, "semi", SETTINGS)


def _grads(net, images, negative, hook) -> dict[str, torch.Tensor]:
    net.train().zero_grad()
    logits = net(images)
    loss = classification_loss(logits, torch.zeros(len(images), dtype=torch.long), negative, "logistic")
    if hook is not None:
        loss = loss + hook(net, torch.zeros(len(images), dtype=torch.long), negative, 2)
    loss.backward()
    return {name: p.grad.clone() for name, p in net.named_parameters()}


def test_the_filter_loss_hook_adds_gradient_through_the_interpretable_layers_only():
    net = icnn.start_net(_performer(), "interpretable", SETTINGS)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    images = torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    negative = torch.tensor([False, True] * 4)
    task = _grads(net, images, negative, None)
    net.load_state_dict(state)
    both = _grads(net, images, negative, icnn.filter_loss_hook(multi_category=False))
    assert all(layer.filter_loss.epoch == 3 for layer in interpretable_layers(net).values())  # 1-based epoch
    for name in task:
        if name.startswith("classifier."):  # above the interpretable layers: untouched
            torch.testing.assert_close(both[name], task[name], rtol=0, atol=0)
    for name in ("features.conv2_2.weight", "features.conv2_1.weight"):  # the interpretable layers themselves
        assert not torch.allclose(both[name], task[name])


def test_multi_category_hook_takes_filter_categories_from_labels():
    net = icnn.start_net(_performer(outputs=2), "interpretable", SETTINGS)
    net.train()
    images, labels = torch.rand(6, 3, SIZE, SIZE), torch.tensor([0, 1, 0, 1, 0, 1])
    net(images)
    value = icnn.filter_loss_hook(multi_category=True)(net, labels, torch.zeros(6, dtype=torch.bool), 0)
    assert torch.isfinite(value)
    assert all(bool(layer.categories.seen.all()) for layer in interpretable_layers(net).values())


def test_fine_tune_caches_each_kind_and_evaluates(single_data):
    performer = _performer()
    runs = {kind: icnn.fine_tune(performer, single_data, kind, SETTINGS, 1, "logistic", "tiny", device="cpu")
            for kind in icnn.KINDS}
    assert not any(run.from_cache for run in runs.values())
    assert "extra_loss" in runs["interpretable"].history and "extra_loss" not in runs["ordinary"].history
    again = icnn.fine_tune(performer, single_data, "interpretable", SETTINGS, 1, "logistic", "tiny", device="cpu")
    assert again.from_cache
    assert icnn.weights_digest(again.net) == icnn.weights_digest(runs["interpretable"].net)
    other = icnn.fine_tune(performer, single_data, "interpretable", {**SETTINGS, "icnn_grad_ratio": 0.5}, 1,
                           "logistic", "tiny", device="cpu")
    assert not other.from_cache  # the knobs are part of the cache key ...
    plain = icnn.fine_tune(performer, single_data, "ordinary", {**SETTINGS, "icnn_grad_ratio": 0.5}, 1, "logistic",
                           "tiny", device="cpu")
    assert plain.from_cache  # ... but the ordinary net ignores the filter-loss knobs

    evaluation = icnn.evaluate(runs["interpretable"].net, single_data.test, ("head", "torso"), device="cpu")
    assert 0 <= evaluation.accuracy <= 1 and 0 <= evaluation.interpretability <= 1
    assert 0 <= evaluation.interpretability_before_mask <= 1
    plain = icnn.evaluate(runs["ordinary"].net, single_data.test, ("head", "torso"), device="cpu")
    assert plain.interpretability_before_mask == plain.interpretability  # no mask in the ordinary net
    assert math.isfinite(evaluation.instability) and 0 < evaluation.random_reference < 1
    assert evaluation.per_filter_instability.shape == evaluation.per_filter_interpretability.shape == (8,)
    assert evaluation.part_names == ("head", "torso", "legs", "tail")


def test_top_layer_maps_are_what_the_net_passes_upwards(single_data):
    positives = single_data.test.positives()
    for kind in icnn.KINDS:
        net = icnn.start_net(_performer(), kind, SETTINGS).eval()
        maps = icnn.top_layer_maps(net, positives, device="cpu")
        with FeatureRecorder(net, ["relu2_2", "mask2_2"]) as recorder:
            net(positives.float_images())
        torch.testing.assert_close(maps.x, recorder.outputs["relu2_2"])
        torch.testing.assert_close(maps.output, recorder.outputs["mask2_2"])
        if kind == "ordinary":
            assert bool((maps.mask == 1).all())
        else:
            assert bool((maps.mask.flatten(2).amax(-1) == 1).all()) and bool((maps.mask < 1).any())
    assert icnn.evaluated_layer(net) == "mask2_2"


def test_filter_and_image_choices():
    maps = torch.zeros(5, 3, 4, 4)
    maps[2, 0, 1, 3] = 5.0  # filter 0 fires most on image 2, at unit (1, 3)
    maps[4, 0, 0, 0] = 4.0
    maps[:, 1] = 1.0  # filter 1: weak everywhere
    maps[0, 2, 3, 3] = 10.0  # mean peak 2.0 > filter 0: 1.8 > filter 1: 1.0
    assert icnn.strongest_filters(maps, 2) == [2, 0]
    assert icnn.top_images(maps, [0], 2)[0].tolist() == [2, 4]
    geometry = LayerGeometry(stride=4.0, centre=2.0, field=10.0)  # unit i -> pixel 2 + 4 i
    positions, weights = icnn.filter_peaks(maps, geometry)
    assert positions.shape == (5, 3, 2) and weights.shape == (5, 3)
    assert positions[2, 0].tolist() == [2 + 4 * 1, 2 + 4 * 3]  # filter 0 on image 2: unit (1, 3)
    torch.testing.assert_close(weights[:, 0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.8]))  # x / its max (5)


def test_summary_has_the_results_keys_and_claims(single_data, multi_data):
    single_performer, multi_performer = _performer(), _performer(outputs=2)
    single = {"bird": {kind: icnn.evaluate(icnn.start_net(single_performer, kind, SETTINGS), single_data.test,
                                           ("head", "torso"), device="cpu") for kind in icnn.KINDS}}
    multi = {kind: icnn.evaluate(icnn.start_net(multi_performer, kind, SETTINGS), multi_data.test,
                                 ("head", "torso"), device="cpu") for kind in icnn.KINDS}
    metrics = icnn.summary(single, multi, "mask2_2", ("head", "torso"))
    for key in ("instability_ordinary", "instability_interpretable", "interpretability_ordinary",
                "interpretability_interpretable", "accuracy_single_ordinary", "accuracy_single_interpretable",
                "accuracy_multi_ordinary", "accuracy_multi_interpretable", "instability_random_positions",
                "interpretability_before_mask_interpretable", "instability_multi_interpretable"):
        assert isinstance(metrics[key], float), key
    assert metrics["accuracy_single_ordinary"] == single["bird"]["ordinary"].accuracy
    assert set(metrics["per_category"]["bird"]) == {"ordinary", "interpretable", "instability_random_positions"}
    assert "mask2_2" in metrics["protocol"]["layer"]
    paper = icnn.paper_values("synthetic")
    assert paper["instability_single"] == [0.139, 0.096]  # Table 4, VGG-16
    assert paper["accuracy_single"] == pytest.approx([0.9866, 0.9539])
    assert icnn.paper_values("cub200")["instability_single"] == [0.137, 0.076]  # Table 5
    claims = icnn.check_claims(metrics, paper)
    assert len(claims) == 5 and all(set(c) == {"name", "value", "paper_value", "holds"} for c in claims)
    assert claims[0]["paper_value"] == pytest.approx(0.096 / 0.139)


def test_figure_inputs_heat_maps_and_best_parts(single_data):
    runs = {"bird": {kind: TrainingRun(icnn.start_net(_performer(), kind, SETTINGS)) for kind in icnn.KINDS}}
    images, panels = icnn.heatmap_panels(runs, {"bird": single_data}, 2, device="cpu")
    assert images.shape == (2, 3, SIZE, SIZE) and set(panels) == set(icnn.KINDS)
    positions, weights = panels["interpretable"]
    assert positions.shape == (2, 8, 2) and weights.shape == (2, 8)
    assert bool(((weights >= 0) & (weights <= 1)).all()) and bool(((positions >= 0) & (positions < SIZE)).all())
    evaluation = icnn.evaluate(runs["bird"]["ordinary"].net, single_data.test, ("head",), device="cpu")
    counts = icnn.best_part_counts({"bird": {"ordinary": evaluation}, "cat": {"ordinary": evaluation}})
    assert sum(counts["ordinary"].values()) == 16 and counts["interpretable"] == {}
    assert set(counts["ordinary"]) <= set(evaluation.part_names)
