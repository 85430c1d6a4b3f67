import math

import pytest
import torch

from helpers.data.arrays import materialize
from helpers.data.synthetic import single_category
from helpers.evaluation import (
    PrecomputedMaps,
    dissection,
    first_with_positives,
    instability,
    instability_shortfall,
    layer_instability,
    named_layer,
    part_interpretability,
    protocol_landmarks,
    random_reference_instability,
)
from helpers.metrics import location_instability, network_dissection, peak_positions
from helpers.metrics import part_interpretability as maps_part_interpretability
from helpers.models.features import collect_features
from helpers.models.geometry import layer_geometry
from helpers.models.nets import small_vgg


def test_streamed_layer_instability_equals_the_one_shot_metric():
    torch.manual_seed(0)
    net = small_vgg(1, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=8)
    arrays = materialize(single_category("dog", "test", 11, 4, 32, seed=0), workers=1)
    landmarks = ("head", "neck", "torso")
    streamed = layer_instability(net, "conv2_1", arrays, landmarks, top_k=5, batch_size=3, device="cpu")
    positives = arrays.positives()
    maps = collect_features(net, positives.images, ["relu2_1"], device="cpu")["relu2_1"]
    positions, scores = peak_positions(maps, layer_geometry(net.features, "relu2_1"))
    points, counts = positives.select_landmarks(landmarks)
    direct = location_instability(positions, scores, points, (32, 32), top_k=5, counts=counts)
    assert math.isclose(streamed.value, direct.value, rel_tol=1e-6)
    assert streamed.num_defined == direct.num_defined == 8


def test_random_reference_is_in_the_expected_range():
    net = small_vgg(1, input_size=64)
    arrays = materialize(single_category("cow", "test", 60, 0, 64, seed=0), workers=1)
    source = named_layer(net, "conv4_2", "cpu")
    value = random_reference_instability(source, arrays, protocol_landmarks("synthetic")).value
    # Uniform positions on an 8 x 8 grid over a 64 px crop: distances to a landmark spread over the crop, so the
    # std of d is about (64 / sqrt(12) * sqrt(2)) / (64 * sqrt(2)) ~ 0.29 at most; real landmarks cut it to ~0.1-0.2.
    assert 0.08 < value < 0.25


def test_protocol_landmarks():
    assert protocol_landmarks("cub200") == ("head", "back", "tail")
    assert protocol_landmarks("synthetic") == ("head", "neck", "torso")


def test_streamed_part_metrics_equal_the_one_shot_metrics():
    torch.manual_seed(1)
    net = small_vgg(1, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=8)
    arrays = materialize(single_category("bird", "test", 9, 3, 32, seed=0), workers=1)
    source = named_layer(net, "conv2_1", "cpu")
    streamed, names = part_interpretability(source, arrays, batch_size=4)
    assert names == ("head", "torso", "legs", "tail")
    positives = arrays.positives()
    maps = collect_features(net, positives.images, ["relu2_1"], device="cpu")["relu2_1"]
    _, labels = positives.merged_part_labels({"head": ("head",), "torso": ("torso", "neck", "wings"),
                                              "legs": ("legs",), "tail": ("tail",)})
    direct = maps_part_interpretability(maps, labels, 4, geometry=source.geometry)
    assert math.isclose(streamed.value, direct.value, rel_tol=1e-6)
    streamed_iou, _ = dissection(source, arrays, batch_size=5)
    direct_iou = network_dissection(maps, labels, 4, geometry=source.geometry)
    assert torch.allclose(streamed_iou.iou, direct_iou.iou)


def test_precomputed_maps_give_the_streamed_metrics_and_check_their_length():
    torch.manual_seed(0)
    net = small_vgg(1, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=8)
    arrays = materialize(single_category("dog", "test", 11, 4, 32, seed=0), workers=1)
    landmarks = ("head", "neck", "torso")
    source = named_layer(net, "conv2_1", "cpu")
    positives = arrays.positives()
    stored = PrecomputedMaps(torch.cat([maps for _, maps in source.batches(positives)]), source.geometry,
                             torch.device("cpu"))
    assert stored.map_size == source.map_size
    for metric in (lambda s: instability(s, arrays, landmarks, top_k=5, batch_size=3).per_unit,
                   lambda s: part_interpretability(s, arrays, batch_size=4, rf_radius=4.0)[0].probability):
        torch.testing.assert_close(metric(stored), metric(source), equal_nan=True)
    with pytest.raises(ValueError, match="maps of 11 images for 15 images"):
        next(stored.batches(arrays))


def test_too_few_positives_give_undefined_metrics_and_say_why():
    net = small_vgg(1, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=8)
    landmarks = ("head", "neck", "torso")
    arrays = materialize(single_category("dog", "test", 3, 4, 32, seed=0), workers=1)
    negatives, one = arrays.subset(arrays.is_negative), arrays.subset([0, *arrays.is_negative.nonzero().flatten()])
    source = named_layer(net, "conv2_1", "cpu")
    assert instability_shortfall(arrays, landmarks) is None
    assert instability_shortfall(negatives, landmarks) == "no positive image"
    assert "head on 1" in instability_shortfall(one, landmarks)
    for held in (negatives, one):  # every unit undefined, none dropped
        result = instability(source, held, landmarks)
        assert math.isnan(result.value) and result.num_defined == 0 and len(result.per_unit) == 8
        assert math.isnan(random_reference_instability(source, held, landmarks).value)
    parts, names = part_interpretability(source, negatives)
    assert names == () and math.isnan(parts.value) and len(parts.per_filter) == 8
    assert first_with_positives({"cat": negatives, "dog": one, "cow": arrays}) == "dog"
    assert first_with_positives({"cat": negatives}) == "cat"


def test_mean_of_measured_skips_what_was_not_measured():
    from helpers.evaluation import mean_of_measured

    assert mean_of_measured([0.2, float("nan"), 0.4], [True, False, True]) == pytest.approx(0.3)
    assert mean_of_measured([float("nan")], [False]) is None
