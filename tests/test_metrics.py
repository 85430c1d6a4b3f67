"""Tests of helpers.metrics: hand-computed examples, protocol edge cases, invariances, streaming == one-shot, and
slow per-image Python references (independent of the vectorised code)."""

import math
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.metrics import (
    ActivationThreshold,
    LocationInstability,
    PartIoU,
    SemanticPurity,
    activation_thresholds,
    classification_accuracy,
    explanatory_graph_instability,
    location_instability,
    network_dissection,
    normalized_distance,
    part_interpretability,
    peak_positions,
    random_position_instability,
    round_rf_regions,
    semantic_purity,
    upsample_to_image,
)
from helpers.models.geometry import LayerGeometry

NAN = math.nan
GEOMETRY = LayerGeometry(stride=4.0, centre=1.5, field=10.0)


# ----------------------------------------------------------------------------------------------- slow references
def slow_deviation(positions, scores, landmarks, size, top_k, counts=None, images=None):
    """D_{u,k} by loops: eligible images sorted by (-score, index), first top_k, statistics.stdev (N - 1)."""
    n, units = scores.shape
    images = range(n) if images is None else images
    diagonal = math.sqrt(size[0] ** 2 + size[1] ** 2)
    out = np.full((units, landmarks.shape[1]), NAN)
    for u in range(units):
        for k in range(landmarks.shape[1]):
            eligible = [i for i in images if not math.isnan(float(landmarks[i, k, 0]))
                        and (counts is None or int(counts[i, k]) == 1)]
            chosen = sorted(eligible, key=lambda i: (-float(scores[i, u]), i))[:top_k]
            d = [math.dist(landmarks[i, k].tolist(), positions[i, u].tolist()) / diagonal for i in chosen]
            if len(d) >= 2:
                out[u, k] = statistics.stdev(d)
    return out


def slow_unit_values(deviation, used=None):
    """Mean over the used landmarks; NaN if any used one is NaN."""
    values = []
    for u in range(deviation.shape[0]):
        row = [deviation[u, k] for k in range(deviation.shape[1]) if used is None or used[k]]
        values.append(NAN if not row or any(math.isnan(v) for v in row) else sum(row) / len(row))
    return np.array(values)


def random_inferences(n, units, landmarks, size, seed, missing=0.2):
    g = torch.Generator().manual_seed(seed)
    positions = torch.rand(n, units, 2, generator=g) * torch.tensor(size, dtype=torch.float32)
    scores = torch.rand(n, units, generator=g)
    points = torch.rand(n, landmarks, 2, generator=g) * torch.tensor(size, dtype=torch.float32)
    points[torch.rand(n, landmarks, generator=g) < missing] = NAN
    return positions, scores, points


# ------------------------------------------------------------------------------------------------ peak positions
def test_peak_positions_project_the_argmax_unit_with_the_geometry():
    maps = torch.tensor([[[[0.0, 1.0, 2.0], [3.0, 4.0, 9.0]],  # peak at unit (1, 2)
                          [[5.0, 5.0, 0.0], [0.0, 0.0, 0.0]]]])  # tie: the first unit (0, 0) wins
    positions, scores = peak_positions(maps, GEOMETRY)
    # unit (i, j) -> (1.5 + 4 i, 1.5 + 4 j)
    assert positions.tolist() == [[[5.5, 9.5], [1.5, 1.5]]]
    assert scores.tolist() == [[9.0, 5.0]]


# ------------------------------------------------------------------------------------------ location instability
def hand_example():
    """3 images, 1 unit always at (0, 0), input 3 x 4 (diagonal 5), two landmarks."""
    positions = torch.zeros(3, 1, 2)
    scores = torch.tensor([[3.0], [2.0], [1.0]])
    landmarks = torch.tensor([[[0.0, 0.0], [3.0, 0.0]],
                              [[3.0, 4.0], [0.0, 4.0]],
                              [[6.0, 8.0], [3.0, 4.0]]])
    return positions, scores, landmarks


def test_instability_hand_example():
    positions, scores, landmarks = hand_example()
    result = location_instability(positions, scores, landmarks, (3, 4))
    # landmark 0: distances 0, 5, 10 -> d = 0, 1, 2; mean 1; sample var (1 + 0 + 1) / 2 = 1 -> D = 1
    # landmark 1: distances 3, 4, 5 -> d = .6, .8, 1; mean .8; var (.04 + 0 + .04) / 2 = .04 -> D = .2
    assert result.deviation[0].tolist() == pytest.approx([1.0, 0.2], abs=1e-6)
    assert result.value == pytest.approx((1.0 + 0.2) / 2, abs=1e-6)
    assert result.num_defined == 1
    assert result.num_images.tolist() == [[3, 3]]
    rms = location_instability(positions, scores, landmarks, (3, 4), combine="rms")
    assert rms.value == pytest.approx(math.sqrt((1.0 + 0.04) / 2), abs=1e-6)


def test_missing_landmark_and_two_instances_exclude_the_image():
    positions, scores, landmarks = hand_example()
    landmarks = torch.cat([landmarks, torch.tensor([[[9.0, 12.0], [NAN, NAN]]])])  # image 3: landmark 1 absent
    positions, scores = torch.zeros(4, 1, 2), torch.tensor([[3.0], [2.0], [1.0], [0.5]])
    counts = torch.tensor([[1, 1], [2, 1], [1, 1], [1, 0]])  # image 1 has landmark 0 twice
    result = location_instability(positions, scores, landmarks, (3, 4), counts=counts)
    # landmark 0: images 0, 2, 3 -> d = 0, 2, 3; mean 5/3; var ((25 + 1 + 16) / 9) / 2 = 7/3
    # landmark 1: images 0, 1, 2 -> D = .2 as in the hand example
    assert result.num_images.tolist() == [[3, 3]]
    assert result.deviation[0].tolist() == pytest.approx([math.sqrt(7 / 3), 0.2], abs=1e-6)
    default = location_instability(positions, scores, landmarks, (3, 4))  # no counts: annotated = one instance
    assert default.num_images.tolist() == [[4, 3]]


def test_fewer_than_two_images_is_undefined_and_left_out_of_the_mean():
    positions, scores, landmarks = hand_example()
    positions = torch.cat([positions, positions], dim=1)  # two units
    scores = torch.cat([scores, scores], dim=1)
    landmarks[1:, 1] = NAN  # landmark 1 only on image 0 -> D_{f,1} undefined for every unit
    result = location_instability(positions, scores, landmarks, (3, 4))
    assert math.isnan(result.deviation[0, 1]) and result.num_images[0, 1] == 1
    assert result.per_unit.isnan().all() and result.num_defined == 0 and math.isnan(result.value)
    # a defined unit next to an undefined one: the mean is over the defined unit only
    only_first = location_instability(positions, scores, landmarks[:, :1], (3, 4))
    assert only_first.value == pytest.approx(1.0, abs=1e-6) and only_first.num_defined == 2
    scores[1:, 1] = NAN  # unit 1 has a (non-finite, ignored) score on image 0 only -> undefined, left out
    mixed = location_instability(positions, scores, landmarks[:, :1], (3, 4))
    assert mixed.num_defined == 1 and math.isnan(mixed.per_unit[1]) and mixed.value == pytest.approx(1.0, abs=1e-6)


def test_nan_units_are_excluded_from_the_layer_mean():
    positions, scores, landmarks = hand_example()
    landmarks = torch.cat([landmarks, landmarks[:, :1]], dim=1)  # K = 3
    positions = torch.zeros(3, 2, 2)
    scores = torch.tensor([[3.0, 3.0], [2.0, 2.0], [1.0, 1.0]])
    counts = torch.ones(3, 3, dtype=torch.long)
    counts[1:, 2] = 2  # landmark 2 usable only on image 0 -> every unit undefined ...
    result = location_instability(positions, scores, landmarks, (3, 4), counts=counts)
    assert result.num_defined == 0
    counts[1, 2] = 1  # ... now images 0, 1 for landmark 2: d = 0, 1 -> D = sqrt(.5)
    result = location_instability(positions, scores, landmarks, (3, 4), counts=counts)
    assert result.value == pytest.approx((1.0 + 0.2 + math.sqrt(0.5)) / 3, abs=1e-6)


def test_top_k_keeps_the_highest_scores():
    positions = torch.zeros(5, 1, 2)
    scores = torch.tensor([[0.1], [5.0], [0.2], [4.0], [3.0]])
    # images 1, 3, 4 carry the top-3 scores; images 0 and 2 are far outliers
    landmarks = torch.tensor([[[500.0, 0.0]], [[0.0, 0.0]], [[900.0, 0.0]], [[5.0, 0.0]], [[10.0, 0.0]]])
    result = location_instability(positions, scores, landmarks, (3, 4), top_k=3)
    # d = 0, 1, 2 -> D = 1
    assert result.value == pytest.approx(1.0, abs=1e-6)
    assert result.num_images.tolist() == [[3]]


def test_tied_scores_go_to_the_earlier_images_also_when_streaming():
    positions = torch.zeros(4, 1, 2)
    scores = torch.zeros(4, 1)  # a dead filter: every peak is 0
    landmarks = torch.tensor([[[0.0, 0.0]], [[5.0, 0.0]], [[50.0, 0.0]], [[60.0, 0.0]]])  # d = 0, 1, 10, 12
    accumulator = LocationInstability((3, 4), top_k=2)
    accumulator.update(positions[:1], scores[:1], landmarks[:1])
    accumulator.update(positions[1:], scores[1:], landmarks[1:])
    # images 0 and 1: d = 0, 1 -> D = sqrt(.5) (images 2, 3 would give sqrt(2))
    assert accumulator.result().value == pytest.approx(math.sqrt(0.5), abs=1e-6)
    # pooled over categories: the per-category lists [1, 3] and [0, 2] merge to images 0, 1 again
    pooled = location_instability(positions, scores, landmarks, (3, 4), top_k=2, categories=torch.tensor([1, 0, 1, 0]))
    assert pooled.value == pytest.approx(math.sqrt(0.5), abs=1e-6)


def test_instability_is_invariant_to_shifts_and_image_permutations():
    positions, scores, landmarks = random_inferences(60, 5, 3, (32, 32), seed=1)
    reference = location_instability(positions, scores, landmarks, (32, 32), top_k=20)
    offset = torch.tensor([7.0, -3.0])
    shifted = location_instability(positions + offset, scores, landmarks + offset, (32, 32), top_k=20)
    order = torch.randperm(60, generator=torch.Generator().manual_seed(2))
    permuted = location_instability(positions[order], scores[order], landmarks[order], (32, 32), top_k=20)
    for other in (shifted, permuted):
        assert torch.allclose(other.per_unit, reference.per_unit, atol=1e-6)
    moved = location_instability(positions + offset, scores, landmarks, (32, 32), top_k=20)
    assert not torch.allclose(moved.per_unit, reference.per_unit, atol=1e-3)  # the test can fail


def test_streaming_matches_one_shot_and_the_slow_reference():
    positions, scores, landmarks = random_inferences(70, 6, 3, (40, 30), seed=3)
    counts = torch.randint(1, 3, (70, 3), generator=torch.Generator().manual_seed(4))
    expected = slow_deviation(positions, scores, landmarks, (40, 30), 25, counts)
    accumulator = LocationInstability((40, 30), top_k=25)
    for start, stop in [(0, 3), (3, 40), (40, 41), (41, 70)]:
        accumulator.update(positions[start:stop], scores[start:stop], landmarks[start:stop],
                           counts=counts[start:stop])
    streamed = accumulator.result()
    one_shot = location_instability(positions, scores, landmarks, (40, 30), top_k=25, counts=counts)
    np.testing.assert_allclose(streamed.deviation.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(streamed.per_unit.numpy(), slow_unit_values(expected), atol=1e-6)
    assert torch.equal(streamed.deviation, one_shot.deviation)
    assert streamed.value == pytest.approx(float(np.nanmean(slow_unit_values(expected))), abs=1e-6)


def multi_category_data(seed):
    """3 categories; landmark k is annotated only on categories that own it."""
    n, units = 90, 5
    positions, scores, landmarks = random_inferences(n, units, 4, (32, 32), seed, missing=0.1)
    categories = torch.arange(n) % 3
    owns = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool)  # (category, landmark)
    landmarks[~owns[categories]] = NAN
    energy = torch.rand(n, units, generator=torch.Generator().manual_seed(seed + 1))
    energy[categories == 1] += 0.3 * torch.arange(units) / units  # the later units favour category 1
    return positions, scores, landmarks, categories, owns, energy


def slow_per_category(positions, scores, landmarks, categories, owns, top_k):
    values = []
    for c in range(3):
        images = [i for i in range(len(categories)) if categories[i] == c]
        deviation = slow_deviation(positions, scores, landmarks, (32, 32), top_k, images=images)
        values.append(slow_unit_values(deviation, owns[c].tolist()))
    return np.stack(values)  # (Cat, U)


def test_min_category_protocol_matches_the_slow_reference():
    positions, scores, landmarks, categories, owns, _ = multi_category_data(seed=5)
    per_category = slow_per_category(positions, scores, landmarks, categories, owns, top_k=10)
    result = location_instability(positions, scores, landmarks, (32, 32), top_k=10, categories=categories,
                                  protocol="min_category")
    expected = np.nanmin(per_category, axis=0)
    np.testing.assert_allclose(result.per_unit.numpy(), expected, atol=1e-6)
    assert result.category.tolist() == np.nanargmin(per_category, axis=0).tolist()
    assert result.value == pytest.approx(float(expected.mean()), abs=1e-6)


def test_assigned_category_protocol_matches_the_slow_reference():
    positions, scores, landmarks, categories, owns, energy = multi_category_data(seed=6)
    per_category = slow_per_category(positions, scores, landmarks, categories, owns, top_k=10)
    mean_energy = np.stack([energy[categories == c].mean(0).numpy() for c in range(3)])
    assigned = mean_energy.argmax(0)
    assert len(set(assigned.tolist())) > 1  # the data really splits the units over categories
    accumulator = LocationInstability((32, 32), top_k=10, num_categories=3)
    for start, stop in [(0, 50), (50, 90)]:
        accumulator.update(positions[start:stop], scores[start:stop], landmarks[start:stop],
                           categories=categories[start:stop], energy=energy[start:stop])
    result = accumulator.result("assigned_category")
    assert result.category.tolist() == assigned.tolist()
    np.testing.assert_allclose(result.per_unit.numpy(), per_category[assigned, np.arange(5)], atol=1e-6)
    with pytest.raises(ValueError, match="energy"):
        location_instability(positions, scores, landmarks, (32, 32), categories=categories,
                             protocol="assigned_category")


def test_single_protocol_pools_categories_exactly():
    positions, scores, landmarks, categories, _, _ = multi_category_data(seed=7)
    pooled = location_instability(positions, scores, landmarks, (32, 32), top_k=15, categories=categories)
    plain = location_instability(positions, scores, landmarks, (32, 32), top_k=15)
    assert torch.equal(pooled.deviation.isnan(), plain.deviation.isnan())
    assert torch.allclose(pooled.deviation.nan_to_num(), plain.deviation.nan_to_num(), atol=1e-9)


def test_explanatory_graph_protocol_ranks_units_by_their_top_scores():
    n = 30
    g = torch.Generator().manual_seed(8)
    positions = torch.rand(n, 3, 2, generator=g) * 32
    landmarks = torch.rand(n, 3, 2, generator=g) * 32
    scores = torch.empty(n, 3)
    scores[:, 0] = torch.rand(n, generator=g)
    scores[:, 1] = 9.0 + torch.rand(n, generator=g) * 0.01  # higher overall mean (9 > 6.7), lower top-20 mean
    scores[:, 2] = torch.where(torch.arange(n) < 20, 10.0, 0.0) + torch.rand(n, generator=g) * 0.01  # top-20 ~10
    result = explanatory_graph_instability(positions, scores, landmarks, (32, 32), num_units=2)
    assert result.units.tolist() == [2, 1]
    deviation = slow_deviation(positions, scores, landmarks, (32, 32), 20)
    expected = np.sqrt((deviation**2).mean(1))  # sqrt((var_head + var_back + var_tail) / 3)
    np.testing.assert_allclose(result.per_unit.numpy(), expected[[2, 1]], atol=1e-6)
    assert result.value == pytest.approx(expected[[2, 1]].mean(), abs=1e-6)


def test_random_position_reference_is_close_to_its_expectation():
    n, size = 200, (32, 32)
    g = torch.Generator().manual_seed(9)
    landmarks = torch.rand(n, 2, 2, generator=g) * 32
    landmarks[:50, 1] = NAN
    result = random_position_instability(landmarks, size, GEOMETRY, (8, 8), num_units=400, top_k=1000, seed=0)
    # exact expectation of the sample variance of independent d_i (image i, position uniform over the 8 x 8 grid):
    # E[s^2] = mean_i Var(d_i) + sum_i (mu_i - mean mu)^2 / (n - 1)
    grid = [(1.5 + 4 * i, 1.5 + 4 * j) for i in range(8) for j in range(8)]
    for k in range(2):
        mus, variances = [], []
        for i in range(n):
            if math.isnan(float(landmarks[i, k, 0])):
                continue
            d = [math.dist(landmarks[i, k].tolist(), p) / math.hypot(*size) for p in grid]
            mus.append(statistics.fmean(d))
            variances.append(statistics.pvariance(d))
        m = len(mus)
        expected = statistics.fmean(variances) + sum((mu - statistics.fmean(mus)) ** 2 for mu in mus) / (m - 1)
        observed = (result.deviation[:, k] ** 2).mean().item()
        assert observed == pytest.approx(expected, rel=0.03)
    again = random_position_instability(landmarks, size, GEOMETRY, (8, 8), num_units=400, top_k=1000, seed=0)
    assert again.value == result.value  # seeded


# ------------------------------------------------------------------------------------------ part interpretability
@pytest.mark.parametrize("quantile", [0.995, 0.9, 0.5])
def test_threshold_is_numpys_linear_percentile_under_streaming(quantile):
    g = torch.Generator().manual_seed(10)
    maps = torch.randn(23, 4, 3, 5, generator=g, dtype=torch.float64)
    maps[:, 1] = torch.randint(0, 3, (23, 3, 5), generator=g).double()  # many ties
    threshold = ActivationThreshold(23, quantile)
    for start, stop in [(0, 1), (1, 10), (10, 23)]:
        threshold.update(maps[start:stop])
    values = maps.transpose(0, 1).reshape(4, -1)
    expected = np.percentile(values.numpy(), 100 * quantile, axis=1)
    np.testing.assert_allclose(threshold.result().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(activation_thresholds(maps, quantile).numpy(),
                               torch.quantile(values, quantile, dim=1).numpy(), rtol=1e-12)


def test_threshold_refuses_a_wrong_image_count():
    threshold = ActivationThreshold(5)
    threshold.update(torch.rand(4, 2, 3, 3))
    with pytest.raises(ValueError, match="expected 5 images"):
        threshold.result()


def test_upsampling_without_geometry_is_bilinear_interpolation():
    maps = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(11))
    expected = F.interpolate(maps, size=(13, 17), mode="bilinear", align_corners=False)
    assert torch.allclose(upsample_to_image(maps, (13, 17)), expected, atol=1e-6)


def test_upsampling_with_geometry_puts_units_at_their_centres():
    maps = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    geometry = LayerGeometry(stride=4.0, centre=1.0, field=4.0)  # units at pixels 1 and 5
    out = upsample_to_image(maps, (8, 8), geometry)[0, 0]
    # pixel p samples unit (p - 1) / 4 clamped to [0, 1]: rows/cols 0, 1 -> unit 0; 5, 6, 7 -> unit 1; 3 -> 0.5
    assert out[1, 1] == 0.0 and out[5, 5] == 12.0 and out[0, 7] == 4.0
    assert out[3, 1] == pytest.approx(4.0)  # halfway between 0 and 8 down column 1
    assert out[2, 4] == pytest.approx(0.25 * 8 + 0.75 * 4)  # (row 0.25, col 0.75): 2 + 3


def test_part_interpretability_hand_example():
    # 2 images of 2 x 2 pixels, maps of the same size (upsampling is the identity), quantile 0.5 (8 values).
    maps = torch.tensor([[[[9.0, 8.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 5.0]]],
                         [[[0.0, 0.0], [7.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    labels = torch.tensor([[[1, 0], [0, 0]], [[2, 2], [1, 1]]], dtype=torch.uint8)
    # filter 0: sorted 0 0 0 0 1 7 8 9 -> rank 3.5 -> T = .5; regions: image 0 top row, image 1 bottom row
    #   part 1: image 0 IoU 1/2 > .2 hit, image 1 IoU 2/2 hit -> P = 1; part 2 (image 1 only): IoU 0 -> P = 0
    # filter 1: sorted 0 x 7, 5 -> T = 0; region: image 0 bottom-right only -> every IoU 0 -> P = 0
    result = part_interpretability(maps, labels, 2, quantile=0.5)
    assert result.probability.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert result.per_filter.tolist() == [1.0, 0.0] and result.value == 0.5
    assert result.best_part.tolist()[0] == 0
    dissection = network_dissection(maps, labels, 2, quantile=0.5)
    # filter 0, part 1: (1 + 2) / (2 + 2); part 2: 0 / (2 + 4). filter 1, part 1: 0 / (2 + 2); part 2: 0 / (1 + 2)
    assert dissection.iou.tolist() == [[0.75, 0.0], [0.0, 0.0]]
    assert dissection.is_detector.tolist() == [True, False] and dissection.num_detectors == 1


def test_round_rf_hand_example():
    # One 2 x 2 map on an 8 x 8 image, units centred at 1.5 + 4 i; only unit (0, 0) is above T (quantile 0.75 of
    # 9, 0, 0, 0 -> T = 0). Its disc of radius 2 around (1.5, 1.5): per axis the squared offsets of pixels 0..4 are
    # 2.25, .25, .25, 2.25, 6.25; pairs with sum <= 4: (.25, .25) x 4 + (.25, 2.25) x 8 = 12 pixels, all in the
    # top-left 4 x 4 quadrant. Part 1 = that quadrant: IoU 12 / 16 = .75 > .2; part 2 = the right half: IoU 0.
    maps = torch.tensor([[[[9.0, 0.0], [0.0, 0.0]]]])
    labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    labels[0, :4, :4] = 1
    labels[0, :, 4:] = 2
    region = round_rf_regions(maps, torch.tensor([0.0]), (8, 8), GEOMETRY, 2.0)
    assert region.sum() == 12 and region.view(8, 8)[:4, :4].sum() == 12
    accumulator = PartIoU(activation_thresholds(maps, 0.75), 2, geometry=GEOMETRY, rf_radius=2.0)
    accumulator.update(maps, labels)
    assert accumulator.interpretability().probability.tolist() == [[1.0, 0.0]]
    assert accumulator.dissection().iou.tolist() == [[0.75, 0.0]]


def test_round_rf_regions_match_a_loop_over_units_and_pixels():
    maps, _, _ = tiny_part_data(seed=14)
    geometry = LayerGeometry(stride=3.0, centre=1.0, field=3.0)
    thresholds = activation_thresholds(maps, 0.8)
    region = round_rf_regions(maps, thresholds, (9, 9), geometry, 2.5).view(12, 5, 9, 9)
    slow = torch.zeros(12, 5, 9, 9)
    for i in range(12):
        for f in range(5):
            for u in range(3):
                for v in range(3):
                    if maps[i, f, u, v] > thresholds[f]:
                        for y in range(9):
                            for x in range(9):
                                if math.hypot(y - (1 + 3 * u), x - (1 + 3 * v)) <= 2.5:
                                    slow[i, f, y, x] = 1
    assert 0 < slow.sum() < slow.numel()
    assert torch.equal(region, slow)


def test_round_rf_needs_the_geometry():
    with pytest.raises(ValueError, match="geometry"):
        PartIoU(torch.zeros(2), 3, rf_radius=4.0)


def slow_part_iou(maps, labels, num_parts, quantile, categories):
    """Per image, filter and part with explicit loops; thresholds by numpy.percentile; F.interpolate per map."""
    n, c = maps.shape[:2]
    size = labels.shape[-2:]
    thresholds = [np.percentile(maps[:, f].numpy(), 100 * quantile) for f in range(c)]
    hits = np.zeros((3, c, num_parts))
    present = np.zeros((3, num_parts))
    energy = np.zeros((3, c))
    images = np.zeros(3)
    inter, union = np.zeros((c, num_parts)), np.zeros((c, num_parts))
    for i in range(n):
        cat = int(categories[i])
        images[cat] += 1
        for f in range(c):
            energy[cat, f] += float(maps[i, f].sum())
            up = F.interpolate(maps[i, f][None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
            region = (up > thresholds[f]).numpy()
            for k in range(num_parts):
                part = (labels[i] == k + 1).numpy()
                a, b = int((region & part).sum()), int((region | part).sum())
                inter[f, k] += a
                union[f, k] += b
                if part.any():
                    hits[cat, f, k] += a / b > 0.2
        for k in range(num_parts):
            present[cat, k] += bool((labels[i] == k + 1).any())
    return hits, present, energy, images, inter, union


def tiny_part_data(seed):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(12, 5, 3, 3, generator=g) ** 3
    labels = torch.zeros(12, 9, 9, dtype=torch.uint8)
    for k, (y, x) in enumerate([(0, 0), (4, 4), (0, 5)]):  # square parts, shifted a little per image
        shift = torch.randint(0, 3, (12, 2), generator=g)
        for i in range(12):
            if torch.rand(1, generator=g) < 0.8:
                labels[i, y + shift[i, 0]:y + shift[i, 0] + 4, x + shift[i, 1]:x + shift[i, 1] + 4] = k + 1
    return maps, labels, torch.arange(12) % 3


def test_part_interpretability_and_dissection_match_the_slow_reference():
    maps, labels, categories = tiny_part_data(seed=12)
    hits, present, energy, images, inter, union = slow_part_iou(maps, labels, 3, 0.9, categories)
    accumulator = PartIoU(activation_thresholds(maps, 0.9), 3, num_categories=3, chunk_elements=300)
    for start, stop in [(0, 5), (5, 6), (6, 12)]:  # uneven batches, channel chunks of 300 // (B * 81)
        accumulator.update(maps[start:stop], labels[start:stop], categories[start:stop])

    single = accumulator.interpretability()
    probability = hits.sum(0) / present.sum(0)
    assert 0 < probability.max() and probability.min() < 1  # not a degenerate example
    np.testing.assert_allclose(single.probability.numpy(), probability)
    np.testing.assert_allclose(single.per_filter.numpy(), probability.max(1))
    assert single.value == pytest.approx(probability.max(1).mean())

    assigned = accumulator.interpretability("assigned_category")
    category = (energy / images[:, None]).argmax(0)
    expected = hits[category, np.arange(5)] / present[category]
    assert assigned.category.tolist() == category.tolist()
    np.testing.assert_allclose(assigned.probability.numpy(), expected)

    dissection = accumulator.dissection()
    np.testing.assert_allclose(dissection.iou.numpy(), inter / union)
    np.testing.assert_allclose(dissection.best_iou.numpy(), (inter / union).max(1))
    assert dissection.is_detector.tolist() == ((inter / union).max(1) > 0.04).tolist()
    one_shot = network_dissection(maps, labels, 3, quantile=0.9, batch_size=5)
    assert torch.allclose(one_shot.iou, dissection.iou)


def test_part_interpretability_with_geometry_matches_a_loop_upsampler():
    maps, labels, _ = tiny_part_data(seed=13)
    geometry = LayerGeometry(stride=3.0, centre=1.0, field=3.0)
    up = upsample_to_image(maps, (9, 9), geometry)
    slow = torch.zeros_like(up)
    for y in range(9):
        for x in range(9):
            u, v = min(max((y - 1) / 3, 0), 2), min(max((x - 1) / 3, 0), 2)
            i0, j0 = int(u), int(v)
            i1, j1 = min(i0 + 1, 2), min(j0 + 1, 2)
            a, b = u - i0, v - j0
            slow[..., y, x] = ((1 - a) * (1 - b) * maps[..., i0, j0] + (1 - a) * b * maps[..., i0, j1]
                               + a * (1 - b) * maps[..., i1, j0] + a * b * maps[..., i1, j1])
    assert torch.allclose(up, slow, atol=1e-6)
    thresholds = activation_thresholds(maps, 0.8)
    result = part_interpretability(maps, labels, 3, geometry=geometry, quantile=0.8)
    expected = np.zeros((5, 3))
    for f in range(5):
        for k in range(3):
            scores = [((slow[i, f] > thresholds[f]) & (labels[i] == k + 1)).sum() /
                      ((slow[i, f] > thresholds[f]) | (labels[i] == k + 1)).sum() > 0.2
                      for i in range(12) if (labels[i] == k + 1).any()]
            expected[f, k] = float(np.mean(scores))
    np.testing.assert_allclose(result.probability.numpy(), expected)


# ------------------------------------------------------------------------------------------- normalized distance
def test_normalized_distance_hand_example():
    predicted = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [20.0, 20.0], [20.0, 35.0]])
    truth = [torch.tensor([[30.0, 40.0]]),  # 50 / 50 = 1
             torch.tensor([[6.0, 8.0], [3.0, 4.0]]),  # nearest instance: 5 / 50 = .1
             torch.empty(0, 2),  # part absent
             torch.tensor([[20.0, 20.0]]),  # 0
             torch.tensor([[20.0, 5.0]])]  # 30 / 50 = .6
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]),  # inside
             torch.tensor([[5.0, 5.0, 9.0, 9.0], [1.0, 1.0, 4.0, 5.0]]),  # before both boxes
             torch.empty(0, 4),
             torch.tensor([[0.0, 0.0, 10.0, 30.0]]),  # y beyond y1
             torch.tensor([[0.0, 0.0, 30.0, 30.0]])]  # x beyond x1
    result = normalized_distance(predicted, truth, (30, 40), boxes=boxes)
    assert result.per_object[[0, 1, 3, 4]].tolist() == pytest.approx([1.0, 0.1, 0.0, 0.6])
    assert math.isnan(result.per_object[2]) and result.count == 4
    assert result.value == pytest.approx((1.0 + 0.1 + 0.0 + 0.6) / 4) and result.inside_rate == 0.25
    dense_truth = torch.tensor([[30.0, 40.0], [3.0, 4.0], [NAN, NAN], [20.0, 20.0], [20.0, 5.0]])
    dense = normalized_distance(predicted, dense_truth, (30, 40))
    assert dense.value == pytest.approx(result.value) and dense.inside_rate is None


def test_normalized_distance_refuses_missing_predictions():
    with pytest.raises(ValueError, match="finite"):
        normalized_distance(torch.tensor([[NAN, 0.0]]), torch.tensor([[1.0, 1.0]]), (10, 10))


# ----------------------------------------------------------------------------------------------- semantic purity
def test_semantic_purity_hand_example():
    labels = torch.tensor([[[1, 1], [2, 0]]], dtype=torch.uint8).expand(5, 2, 2)
    # unit 0: scores 3 3 2 1 1 (total 10, 30% = 3) -> K = 1 (the first 3 reaches it exactly; tie -> image 0)
    # unit 1: scores 2 2 2 2 2 -> cumulative 2, 4 -> K = 2; positions on parts 2, 1 -> purity 1/2
    # unit 2: scores 1 4 4 0 1 -> sorted 4 (image 1), 4 (image 2) -> K = 1, image 1 (ties: earlier image)
    # unit 3: scores .9 .8 .7 .6 0 (total 3, 30% = .9) -> K = 1, although in floats .9+.8+.7+.6 > 3
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.9], [3.0, 2.0, 4.0, 0.8], [2.0, 2.0, 4.0, 0.7], [1.0, 2.0, 0.0, 0.6],
                           [1.0, 2.0, 1.0, 0.0]], dtype=torch.float64)
    # (image, unit) -> pixel of the inference; every other inference sits at (1, 1), the background
    where = {(0, 0): (0, 0), (0, 1): (1, 0), (1, 1): (0, 1), (1, 2): (1, 1), (2, 2): (0, 0), (0, 3): (0, 1)}
    positions = torch.ones(5, 4, 2)
    for (i, u), (y, x) in where.items():
        positions[i, u] = torch.tensor([y + 0.3, x - 0.4])  # rounds to (y, x)
    result = semantic_purity(positions, scores, labels)
    assert result.num_inferences.tolist() == [1, 2, 1, 1]
    # unit 2's top inference (image 1, not the tied image 2 on part 1) is on the background -> purity 0
    assert result.per_unit.tolist() == [1.0, 0.5, 0.0, 1.0]
    assert result.best_part.tolist()[0] == 0 and result.value == pytest.approx(0.625)
    top = semantic_purity(positions, scores, labels, num_units=2)  # totals 10, 10, 10, 3 -> ties to the first
    assert top.units.tolist() == [0, 1] and top.value == pytest.approx(0.75)


def test_semantic_purity_streaming_matches_one_shot():
    g = torch.Generator().manual_seed(14)
    positions, scores = torch.rand(40, 6, 2, generator=g) * 9, torch.rand(40, 6, generator=g)
    labels = torch.randint(0, 4, (40, 9, 9), generator=g, dtype=torch.uint8)
    purity = SemanticPurity()
    for start, stop in [(0, 7), (7, 8), (8, 40)]:
        purity.update(positions[start:stop], scores[start:stop], labels[start:stop])
    streamed, one_shot = purity.result(), semantic_purity(positions, scores, labels)
    assert torch.equal(streamed.per_unit, one_shot.per_unit)
    for u in range(6):  # slow: sort, take K, count labels at the rounded positions
        order = sorted(range(40), key=lambda i: (-float(scores[i, u]), i))
        total, running, chosen = float(scores[:, u].sum()), 0.0, []
        for i in order:
            if running >= 0.3 * total:
                break
            running += float(scores[i, u])
            chosen.append(i)
        pixel = [(min(int(positions[i, u, 0] + 0.5), 8), min(int(positions[i, u, 1] + 0.5), 8)) for i in chosen]
        hits = [int(labels[i, y, x]) for i, (y, x) in zip(chosen, pixel, strict=True)]
        best = max(hits.count(part) for part in (1, 2, 3))
        assert streamed.per_unit[u].item() == pytest.approx(best / len(chosen))


# ---------------------------------------------------------------------------------------------------- accuracy
def test_classification_accuracy_modes():
    assert classification_accuracy(torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, -1, -1, 1])) == 0.5
    assert classification_accuracy(torch.tensor([[2.0], [-1.0]]), torch.tensor([True, False])) == 1.0
    logits = torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert classification_accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
    # multi-label: 9 sign decisions, 7 right (row 0: +,+,- vs +1,-1,-1 -> 2; row 1: 3; row 2: 2)
    targets = torch.tensor([[1, -1, -1], [1, 1, -1], [-1, -1, -1]])
    assert classification_accuracy(logits, targets) == pytest.approx(7 / 9)


# ------------------------------------------------------------------------------------------------------ devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs_give_the_cpu_results_on_cuda():
    maps, labels, categories = tiny_part_data(seed=15)
    positions, scores = peak_positions(maps, GEOMETRY)
    landmarks = torch.rand(12, 2, 2, generator=torch.Generator().manual_seed(16)) * 9
    cpu = location_instability(positions, scores, landmarks, (9, 9), top_k=5)
    gpu = location_instability(positions.cuda(), scores.cuda(), landmarks.cuda(), (9, 9), top_k=5)
    assert gpu.per_unit.is_cuda and torch.allclose(gpu.per_unit.cpu(), cpu.per_unit, atol=1e-6, equal_nan=True)
    gpu_parts = part_interpretability(maps.cuda(), labels.cuda(), 3, categories=categories.cuda(),
                                      protocol="assigned_category")
    cpu_parts = part_interpretability(maps, labels, 3, categories=categories, protocol="assigned_category")
    assert torch.allclose(gpu_parts.probability.cpu(), cpu_parts.probability, equal_nan=True)
    gpu_random = random_position_instability(landmarks.cuda(), (9, 9), GEOMETRY, (3, 3), num_units=8, top_k=5)
    cpu_random = random_position_instability(landmarks, (9, 9), GEOMETRY, (3, 3), num_units=8, top_k=5)
    assert gpu_random.value == pytest.approx(cpu_random.value, abs=1e-6)
    assert semantic_purity(positions.cuda(), scores.cuda(), labels.cuda()).per_unit.is_cuda
