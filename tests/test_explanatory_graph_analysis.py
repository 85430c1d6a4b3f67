"""Notebook 01's analyses: equal-count selection, raw filters in the graph's orientation, patches, heat maps,
pattern masks and synthesis, the inverter, and the remining helper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers.data.arrays import PartArrays
from helpers.explanatory_graph import LayerSpec, MinerParams, mine_graph
from helpers.explanatory_graph.analysis import (
    Observations,
    Views,
    filter_observations,
    heat_map,
    instability_table,
    layer_heat_maps,
    node_observations,
    patches,
    pattern_mask,
    purity_table,
    random_mask_like,
    remine,
    table_count,
    top_units,
    views,
)
from helpers.explanatory_graph.synthesis import Inverter, synthesize, train_inverter
from helpers.models.geometry import LayerGeometry
from helpers.models.nets import small_vgg

SPEC = LayerSpec("conv", 6, 4, 4, 16.0, 7.5)  # 64 px input: unit i at 7.5 + 16 i


def tiny_graph(specs: list[LayerSpec], flip: bool = False, n: int = 8):
    generator = torch.Generator().manual_seed(0)
    maps = {s.name: torch.rand(n, s.channels, s.height, s.width, generator=generator) for s in specs}
    mirrored = {name: m.flip(-1) for name, m in maps.items()} if flip else None
    params = MinerParams(nodes_per_filter=2, n_parents=2, iterations=2, flip=flip)
    return mine_graph(maps, specs, params, input_size=64, device="cpu", mirrored=mirrored), maps, mirrored


def arrays_with(landmarks: torch.Tensor, part_labels: torch.Tensor | None = None) -> PartArrays:
    """Positive images (n, 64 x 64) with the given landmarks (n, K, 2) named l0, l1, ..."""
    n, k = landmarks.shape[:2]
    labels = torch.zeros(n, 64, 64, dtype=torch.uint8) if part_labels is None else part_labels
    return PartArrays(torch.zeros(n, 3, 64, 64, dtype=torch.uint8), torch.zeros(n, dtype=torch.long),
                      torch.zeros(n, dtype=torch.bool), ["bird"] * n, ("bird",), tuple(f"l{i}" for i in range(k)),
                      landmarks, torch.ones(n, k, dtype=torch.uint8), ("head",), labels)


def test_top_units_rank_by_the_mean_of_the_top_20_scores():
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(50, 6, generator=generator)
    scores[:20, 4] += 5.0  # unit 4: the best 20 images, poor elsewhere
    scores[:, 1] += 1.0  # unit 1: best on average, but a lower top-20 mean than unit 4
    expected = sorted(range(6), key=lambda u: -sum(sorted(scores[:, u].tolist(), reverse=True)[:20]))
    assert top_units(scores, 6).tolist() == expected
    assert top_units(scores, 2).tolist() == [4, 1]


def test_equal_count_selection_takes_the_top_k_nodes_and_as_many_filters():
    graph, _, _ = tiny_graph([SPEC])
    assert table_count(SPEC.channels, 1 / 3) == 2
    n, generator = 40, torch.Generator().manual_seed(2)
    landmarks = torch.rand(n, 3, 2, generator=generator) * 64
    positions = torch.rand(n, 12, 2, generator=generator) * 64  # 12 nodes at random places ...
    scores = torch.rand(n, 12, generator=generator)
    stable = [3, 8]  # ... but the two best-ranked ones sit at a fixed offset from landmark l0: instability 0 on l0
    scores[:, stable] += 1.0
    positions[:, stable] = landmarks[:, :1] + torch.tensor([5.0, -3.0])
    filters_positions = torch.rand(n, 6, 2, generator=generator) * 64
    filter_scores = torch.rand(n, 6, generator=generator)
    filter_scores[:, 2] += 1.0  # the best two filters: 2 and 5; filter 5 is stable on l0
    filter_scores[:, 5] += 2.0
    filters_positions[:, 5] = landmarks[:, 0] + 1.0
    nodes = Observations({"conv": positions}, {"conv": scores})
    filters = Observations({"conv": filters_positions}, {"conv": filter_scores})
    geometry = {"conv": LayerGeometry(16.0, 7.5, 0.0)}
    row, = instability_table(graph, nodes, filters, filters, arrays_with(landmarks), ["l0"], geometry, share=1 / 3)
    assert row.count == 2 and row.nodes == pytest.approx(0.0, abs=1e-6)
    best = filter_scores[:, 2].topk(20).indices  # filter 2's top-20 images
    distance = (landmarks[best, 0] - filters_positions[best, 2]).norm(dim=-1) / math.hypot(64, 64)
    assert row.filters == pytest.approx(float(distance.std()) / 2, rel=1e-5)  # (filter 2 + stable filter 5) / 2
    assert 0.05 < row.random < 0.3


def test_purity_compares_the_top_d_nodes_by_total_score_with_the_d_filters():
    graph, _, _ = tiny_graph([SPEC])
    n = 10
    labels = torch.zeros(n, 64, 64, dtype=torch.uint8)
    labels[:, :32] = 1  # the top half of every image is part 1
    positions = torch.full((n, 12, 2), 48.0)  # every node on the background ...
    scores = torch.ones(n, 12)
    scores[:, :6] = 2.0  # ... but the six with the highest total score (the layer has six filters) on the part
    positions[:, :6, 0] = 10.0
    filters = Observations({"conv": torch.full((n, 6, 2), 10.0)}, {"conv": torch.ones(n, 6)})
    filters.positions["conv"][:, :3, 0] = 48.0  # three of the six filters on the background
    row, = purity_table(graph, Observations({"conv": positions}, {"conv": scores}), filters, labels)
    assert (row.count, row.nodes, row.filters) == (6, 1.0, 0.5)


def test_raw_filters_in_the_graph_orientation_are_mapped_back():
    graph, _, _ = tiny_graph([SPEC])
    maps = torch.zeros(2, 6, 4, 4)
    mirrored = torch.zeros(2, 6, 4, 4)
    maps[:, :, 1, 0] = 1.0  # peak at unit (1, 0) of the image ...
    mirrored[:, :, 2, 1] = 1.0  # ... and at (2, 1) of its mirror image, i.e. (2, 2) of the image
    seen = Views({"conv": maps}, {"conv": mirrored})
    plain = filter_observations(graph, seen)
    aligned = filter_observations(graph, seen, torch.tensor([False, True]))
    assert plain.positions["conv"][1, 0].tolist() == [7.5 + 16, 7.5]
    assert aligned.positions["conv"][0, 0].tolist() == [7.5 + 16, 7.5]
    assert aligned.positions["conv"][1, 0].tolist() == [7.5 + 32, 7.5 + 32]


def test_patches_are_centred_on_the_positions_of_the_best_images():
    images = torch.full((3, 3, 64, 64), 51, dtype=torch.uint8)
    images[:, :, 10, 62] = 255  # a bright pixel near the right border
    images[2, 1, 10, 62] = 0
    positions = torch.tensor([[10.0, 62.0]] * 3)
    crops = patches(images, positions, torch.tensor([0.1, 0.9, 0.5]), 2, 7)
    assert crops.shape == (2, 3, 7, 7)
    assert crops[0, :, 3, 3].tolist() == [1.0, 1.0, 1.0]  # image 1 (best) first, centred on the pixel
    assert crops[1, :, 3, 3].tolist() == [1.0, 0.0, 1.0]  # then image 2
    assert (crops[:, :, :, 5:] == 0).all() and (crops[0, :, :, :5] > 0).all()  # zero beyond the right border


def test_heat_map_of_a_single_node_is_its_gaussian():
    position, sigma, score = torch.tensor([[20.0, 30.0]]), torch.tensor([4.0]), torch.tensor([2.5])
    heat = heat_map(position, sigma, score, (64, 64), fraction=1.0)
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    expected = 2.5 * torch.exp(-((rows - 20) ** 2 + (cols - 30) ** 2) / (2 * 16.0))
    torch.testing.assert_close(heat, expected)
    two = heat_map(torch.tensor([[20.0, 30.0], [50.0, 5.0]]), torch.tensor([4.0, 4.0]), torch.tensor([2.5, 1.0]),
                   (64, 64), fraction=0.5)
    torch.testing.assert_close(two, expected)  # only the top half (the higher-scoring node) is drawn


def test_pattern_mask_keeps_exactly_the_units_of_the_top_nodes_and_synthesis_zeroes_the_rest():
    generator = torch.Generator().manual_seed(3)
    channels, per_filter, shape = 4, 5, (4, 3, 3)
    units = torch.randint(0, 9, (2, channels, per_filter), generator=generator)
    scores = torch.rand(2, channels, per_filter, generator=generator)
    mask = pattern_mask(units, scores, shape, fraction=0.1)  # 10% of 20 nodes: 2 per image
    for image in range(2):
        expected = torch.zeros(shape, dtype=torch.bool)
        for flat in scores[image].flatten().topk(2).indices.tolist():
            c, k = divmod(flat, per_filter)
            expected[c].view(-1)[units[image, c, k]] = True
        assert torch.equal(mask[image], expected)

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(()))

        def forward(self, maps):
            self.seen = maps
            return maps[:, :3]

    control = random_mask_like(mask, seed=5)
    assert torch.equal(control.flatten(1).sum(1), mask.flatten(1).sum(1)) and not torch.equal(control, mask)
    recorder, maps = Recorder(), torch.rand(2, *shape, generator=generator) + 0.1
    synthesize(recorder, maps, mask)
    assert torch.equal(recorder.seen[mask], maps[mask]) and (recorder.seen[~mask] == 0).all()


def test_the_inverter_reduces_its_reconstruction_loss():
    torch.manual_seed(4)
    net = small_vgg(num_outputs=1, input_size=16)
    rows = torch.linspace(0, 1, 16)
    images = torch.stack([(torch.outer(rows, rows.flip(0) * k / 24) * 255).expand(3, 16, 16) for k in range(24)])
    inverter = Inverter(channels=64, upsamplings=2, width=16)  # conv3_2 of a 16 px small_vgg: 4 x 4
    assert inverter(torch.zeros(1, 64, 4, 4)).shape == (1, 3, 16, 16)
    losses = train_inverter(inverter, net, "conv3_2", images.to(torch.uint8), epochs=6, batch_size=8, lr=1e-2,
                            device="cpu")
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]


def test_remine_mines_the_chosen_layers_with_the_new_knobs():
    specs = [LayerSpec("low", 3, 4, 4, 16.0, 7.5), LayerSpec("up", 2, 2, 2, 32.0, 15.5)]
    graph, maps, mirrored = tiny_graph(specs, flip=True)
    params = MinerParams(nodes_per_filter=3, n_parents=1, iterations=2, tau=0.5, flip=True)
    small = remine(graph, Views(maps, mirrored), ["low", "up"], params, images=5)
    assert small.layers == ["low", "up"] and small.nodes_per_filter("low") == 3
    assert small.meta["n_images"] == 5 and small.meta["params"]["tau"] == 0.5
    assert int((small.parents["low"] >= 0).sum(-1).max()) == 1


def test_no_test_image_gives_empty_observations_and_undefined_tables():
    specs = [LayerSpec("conv", 6, 4, 4, 16.0, 7.5), LayerSpec("top", 6, 2, 2, 32.0, 15.5)]
    graph, _, _ = tiny_graph(specs, flip=True)
    empty = {s.name: torch.zeros(0, s.channels, s.height, s.width) for s in specs}
    nodes, inference = node_observations(graph, Views(empty, empty))
    assert nodes.scores["conv"].shape == (0, 12) and inference.flips.shape == (0,)
    filters = filter_observations(graph, Views(empty, empty))
    assert layer_heat_maps(graph, nodes, [])["top"].shape == (0, 64, 64)
    arrays = arrays_with(torch.zeros(0, 3, 2))
    geometry = {s.name: LayerGeometry(s.stride, s.centre, 0.0) for s in specs}
    rows = instability_table(graph, nodes, filters, filters, arrays, ["l0", "l1"], geometry)
    assert all(math.isnan(value) for row in rows for value in (row.nodes, row.filters, row.random))
    purity = purity_table(graph, nodes, filters, arrays.part_labels)
    assert all(math.isnan(row.nodes) and math.isnan(row.filters) for row in purity)
    net = small_vgg(1, input_size=32, widths=(4, 8), convs_per_block=(1, 1), fc_dim=8)
    seen = views(net, torch.zeros(0, 3, 32, 32, dtype=torch.uint8), ["conv1_1", "conv2_1"], "cpu")
    assert seen.maps["conv2_1"].shape == (0, 8, 16, 16) and seen.mirrored["conv1_1"].shape == (0, 4, 32, 32)
