"""Explanatory graph: fast miner vs reference, EM monotonicity, planted patterns, persistence, flips, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.explanatory_graph import (
    ExplanatoryGraph,
    GraphFileError,
    LayerSpec,
    MinerParams,
    infer,
    infer_reference,
    layer_specs,
    mine_graph,
    mine_reference,
    net_features,
    net_source,
)
from helpers.profiling import LargestTensor

TWO_LAYERS = [LayerSpec("low", 3, 4, 4, 1.0, 0.0), LayerSpec("up", 2, 2, 2, 2.0, 0.5)]  # 4 px input
THREE_LAYERS = [LayerSpec("a", 3, 4, 4, 2.0, 0.5), LayerSpec("b", 2, 4, 4, 2.0, 0.5),
                LayerSpec("c", 3, 2, 2, 4.0, 1.5)]  # 8 px input


def random_maps(specs: list[LayerSpec], n: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {s.name: torch.randn(n, s.channels, s.height, s.width, generator=generator).relu() for s in specs}


def random_init(specs: list[LayerSpec], nodes: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {s.name: torch.rand(s.channels, nodes, 2, generator=generator, dtype=torch.float64) for s in specs}


def numpy_maps(maps: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in maps.items()}


@pytest.mark.parametrize(("specs", "input_size", "n_parents"), [(TWO_LAYERS, 4, 8), (THREE_LAYERS, 8, 2)])
def test_fast_miner_matches_reference(specs, input_size, n_parents):
    maps, init = random_maps(specs, 5, seed=1), random_init(specs, 2, seed=2)
    params = MinerParams(nodes_per_filter=2, n_parents=n_parents, iterations=4)
    fast = mine_graph(maps, specs, params, input_size=input_size, batch_size=2, device="cpu", init=init)
    slow = mine_reference(numpy_maps(maps), specs, params, input_size=input_size, init=numpy_maps(init))
    assert any(slow.parents[s.name].numel() for s in specs[:-1])  # edges were chosen, so they are compared
    for spec in specs:
        name = spec.name
        torch.testing.assert_close(fast.mu[name], slow.mu[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.sigma[name], slow.sigma[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.norm[name], slow.norm[name], atol=1e-7, rtol=1e-6)
        np.testing.assert_allclose(fast.meta["history"][name], slow.meta["history"][name], rtol=1e-5)
        for stat, value in fast.stats[name].items():
            torch.testing.assert_close(value, slow.stats[name][stat], atol=1e-5, rtol=1e-5)
        assert [sorted(row) for row in fast.parents[name].flatten(0, 1).tolist()] == \
               [sorted(row) for row in slow.parents[name].flatten(0, 1).tolist()]
    ours, ref = infer(fast, maps, batch_size=3), infer_reference(fast, numpy_maps(maps))
    for name, (positions, scores) in ref.items():
        np.testing.assert_allclose(ours.positions[name].numpy(), positions, atol=1e-6)
        np.testing.assert_allclose(ours.scores[name].numpy(), scores, rtol=1e-5, atol=1e-7)


def test_em_never_lowers_the_objective_on_fixed_edges():
    specs = [LayerSpec("low", 4, 8, 8, 1.0, 0.0), LayerSpec("up", 3, 4, 4, 2.0, 0.5)]
    maps = random_maps(specs, 12, seed=3)
    generator = torch.Generator().manual_seed(4)
    edges = {"low": torch.randint(0, 3 * 3, (4, 3, 2), generator=generator)}
    params = MinerParams(nodes_per_filter=3, iterations=12)
    graph = mine_graph(maps, specs, params, input_size=8, batch_size=5, device="cpu", dtype=torch.float64,
                       edges=edges)
    assert torch.equal(graph.parents["low"], edges["low"])
    for name in ("low", "up"):
        history = np.array(graph.meta["history"][name])
        assert len(history) == params.iterations + 1
        assert np.all(np.diff(history) >= -1e-9 * np.abs(history[:-1])), history
        assert history[-1] > history[0] + 1.0  # EM did move the parameters


def blob(height: int, width: int, y: float, x: float, amplitude: float, spread: float = 0.7) -> torch.Tensor:
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None]
    return amplitude * torch.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * spread**2))


PLANTED_SPECS = [LayerSpec("low", 4, 16, 16, 2.0, 0.5), LayerSpec("up", 3, 8, 8, 4.0, 1.5)]  # 32 px input
PLANTED_PARENT = [0, 1, 2, 1]  # upper channel whose peak drags each lower channel's two peaks


def planted_maps(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Upper channel k: one peak at base_k + shift_k^I (shift uniform in {-1, 0, 1}^2 units: +-4 px). Lower channel
    j: two peaks at 2 (upper peak) + offset_{j,a} (lower units; the same image-plane displacement in every image),
    one distractor peak at a random place, and uniform noise. Returns the maps and the planted lower peaks
    (n, 4, 2, 2)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.tensor([[3, 3], [3, 4], [4, 3]])
    offsets = torch.tensor([[[-3, -3], [3, 2]], [[-2, 3], [3, -3]], [[3, 3], [-3, -2]], [[-3, 0], [2, 3]]])
    upper = torch.rand(n, 3, 8, 8, generator=generator) * 0.15
    lower = torch.rand(n, 4, 16, 16, generator=generator) * 0.15
    truth = torch.zeros(n, 4, 2, 2)
    for image in range(n):
        peaks = base + torch.randint(-1, 2, (3, 2), generator=generator)
        for k in range(3):
            upper[image, k] += blob(8, 8, *peaks[k].tolist(), 1.0)
        for j, parent in enumerate(PLANTED_PARENT):
            for a in range(2):
                truth[image, j, a] = 2 * peaks[parent] + offsets[j, a]
                amplitude = 0.9 + 0.2 * torch.rand((), generator=generator).item()
                lower[image, j] += blob(16, 16, *truth[image, j, a].tolist(), amplitude)
            lower[image, j] += blob(16, 16, *torch.randint(0, 16, (2,), generator=generator).tolist(), 0.6)
    return {"low": lower, "up": upper}, truth


def test_planted_patterns_are_recovered_with_their_parent():
    maps, truth = planted_maps(48, seed=5)
    # the planted peaks move by 4 px (1/8 of the image) along each axis: nodes may be that wide before their
    # parents are known (the default sigma_max = 0.1 is tuned for CNN features)
    params = MinerParams(nodes_per_filter={"low": 3, "up": 2}, n_parents=1, iterations=16, sigma_max=0.25)
    graph = mine_graph(maps, PLANTED_SPECS, params, input_size=32, batch_size=16, device="cpu")
    positions = infer(graph, maps).positions["low"] * 32  # pixels, (n, 4, 3, 2)
    truth_pixels = 0.5 + 2 * truth  # unit -> pixel (stride 2, centre 0.5)
    for j, parent in enumerate(PLANTED_PARENT):
        for a in range(2):
            units_off = (positions[:, j] - truth_pixels[:, j, a, None]).norm(dim=-1) / 2  # (n, 3), lower units
            hit_rate = (units_off <= 1.0).float().mean(0)
            node = int(hit_rate.argmax())
            assert hit_rate[node] >= 0.9, (j, a, hit_rate)
            chosen = int(graph.parents["low"][j, node, 0])
            assert chosen // graph.nodes_per_filter("up") == parent, (j, a, chosen)


@pytest.fixture(scope="module")
def small_graph() -> tuple[ExplanatoryGraph, dict[str, torch.Tensor]]:
    specs = [LayerSpec("low", 3, 8, 8, 2.0, 0.5), LayerSpec("up", 4, 4, 4, 4.0, 1.5)]  # 16 px input, symmetric
    maps = random_maps(specs, 10, seed=6)
    params = MinerParams(nodes_per_filter=3, n_parents=3, iterations=4)
    graph = mine_graph(maps, specs, params, input_size=16, batch_size=4, device="cpu",
                       meta={"net": "toy", "category": "bird"})
    return graph, maps


def test_save_load_round_trip(tmp_path, small_graph):
    graph, maps = small_graph
    graph.save(tmp_path / "graph")
    loaded = ExplanatoryGraph.load(tmp_path / "graph.json")
    assert loaded.specs == graph.specs and loaded.input_size == graph.input_size
    assert json.dumps(loaded.meta, sort_keys=True) == json.dumps(graph.meta, sort_keys=True)
    for table in ("mu", "sigma", "parents", "norm"):
        for name in graph.layers:
            assert torch.equal(getattr(loaded, table)[name], getattr(graph, table)[name])
    for name in graph.layers:
        for stat, value in graph.stats[name].items():
            assert torch.equal(loaded.stats[name][stat], value)
    before, after = infer(graph, maps), infer(loaded, maps)
    for name in graph.layers:
        assert torch.equal(before.positions[name], after.positions[name])
        assert torch.equal(before.scores[name], after.scores[name])


def test_load_reports_corrupt_and_mismatched_files(tmp_path, small_graph):
    graph, _ = small_graph
    json_path = graph.save(tmp_path / "g")
    npz_path = tmp_path / "g.npz"
    with pytest.raises(GraphFileError, match="no saved graph"):
        ExplanatoryGraph.load(tmp_path / "missing")
    header = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**header, "version": 999}))
    with pytest.raises(GraphFileError, match="version 999"):
        ExplanatoryGraph.load(json_path)
    json_path.write_text(json.dumps(header))
    npz_path.write_bytes(npz_path.read_bytes()[:-20])
    with pytest.raises(GraphFileError, match="checksum"):
        ExplanatoryGraph.load(json_path)
    json_path.write_text("{not json")
    with pytest.raises(GraphFileError, match="not valid JSON"):
        ExplanatoryGraph.load(json_path)


def test_networkx_export_has_every_node_and_edge(small_graph):
    graph, _ = small_graph
    exported = graph.to_networkx()
    assert exported.number_of_nodes() == sum(m.shape[0] * m.shape[1] for m in graph.mu.values())
    assert exported.number_of_edges() == int((graph.parents["low"] >= 0).sum()) > 0
    for edge in graph.edges():
        child, parent = exported.nodes[edge.child], exported.nodes[edge.parent]
        assert (child["layer"], parent["layer"]) == ("low", "up")
        np.testing.assert_allclose(edge.displacement, np.subtract(child["mu"], parent["mu"]))
        assert exported.edges[edge.parent, edge.child]["displacement"] == edge.displacement


def test_inference_on_flipped_maps_gives_mirrored_positions(small_graph):
    graph, maps = small_graph
    plain = infer(graph, maps)
    flipped = infer(graph, {name: m.flip(-1) for name, m in maps.items()}, flipped=True)
    axis = (graph.input_size - 1) / graph.input_size
    for name in graph.layers:
        mirrored = plain.positions[name] * torch.tensor([1.0, -1.0]) + torch.tensor([0.0, axis])
        torch.testing.assert_close(flipped.positions[name], mirrored, atol=1e-6, rtol=0)
        torch.testing.assert_close(flipped.scores[name], plain.scores[name], rtol=1e-4, atol=1e-7)
        width = graph.spec(name).width
        row, col = plain.units[name] // width, plain.units[name] % width
        assert torch.equal(flipped.units[name], row * width + (width - 1 - col))
    assert not torch.allclose(flipped.positions["low"], plain.positions["low"])  # the flip did move the nodes


def test_mining_streams_batches_and_memory_does_not_grow_with_images():
    specs = [LayerSpec("low", 4, 8, 8, 2.0, 0.5), LayerSpec("up", 3, 4, 4, 4.0, 1.5)]
    params = MinerParams(nodes_per_filter=3, n_parents=2, iterations=3)
    batch = 4

    def counting_source(maps, seen):
        def batches():
            seen["passes"] += 1
            for start in range(0, len(maps["low"]), batch):
                seen["sizes"].append(len(maps["low"][start : start + batch]))
                yield {name: m[start : start + batch] for name, m in maps.items()}
        return batches

    peaks, graphs = {}, {}
    for n in (16, 64):
        maps, seen = random_maps(specs, n, seed=7), {"passes": 0, "sizes": []}
        with LargestTensor() as recorder:
            graphs[n] = mine_graph(counting_source(maps, seen), specs, params, input_size=16, batch_size=batch,
                                   device="cpu")
        peaks[n] = recorder.elements
        assert seen["passes"] == 1 + len(specs) * (params.iterations + 1)
        assert max(seen["sizes"]) <= batch and sum(seen["sizes"]) == seen["passes"] * n
    assert peaks[64] == peaks[16] < 16 * 4 * 8 * 8  # below the features of 16 images, whatever n
    whole = mine_graph(random_maps(specs, 16, seed=7), specs, params, input_size=16, batch_size=16, device="cpu")
    for name in whole.layers:
        torch.testing.assert_close(graphs[16].mu[name], whole.mu[name], atol=1e-5, rtol=0)
        assert torch.equal(graphs[16].parents[name], whole.parents[name])


def test_sources_are_checked():
    specs = [LayerSpec("up", 2, 2, 2, 2.0, 0.5)]
    maps = random_maps(specs, 4, seed=8)
    one_shot = iter([maps])
    with pytest.raises(TypeError, match="one-shot"):
        mine_graph(one_shot, specs, input_size=4)
    with pytest.raises(ValueError, match=r"expected feature maps \(b, 2, 2, 2\)"):
        mine_graph({"up": maps["up"][:, :, :1]}, specs, input_size=4)
    with pytest.raises(KeyError, match="no layer 'up'"):
        mine_graph({"other": maps["up"]}, specs, input_size=4)


def test_mining_from_a_performer_end_to_end():
    from helpers.models.nets import small_vgg

    torch.manual_seed(0)
    net = small_vgg(num_outputs=2)
    specs = layer_specs(net, ["conv4_2", "conv3_2"])
    assert [(s.name, s.channels, s.height, s.stride) for s in specs] == [("conv3_2", 64, 16, 4.0),
                                                                       ("conv4_2", 128, 8, 8.0)]
    images = torch.rand(6, 3, 64, 64)
    source = net_source(net, images, [s.name for s in specs], batch_size=4, device="cpu")
    graph = mine_graph(source, specs, MinerParams(nodes_per_filter=2, n_parents=3, iterations=2), input_size=64,
                       device="cpu", meta={"net": "small_vgg"})
    result = infer(graph, source)
    assert result.positions["conv3_2"].shape == (6, 64, 2, 2)
    assert torch.isfinite(result.scores["conv4_2"]).all() and (result.positions["conv3_2"] <= 1).all()


@pytest.mark.parametrize(("specs", "input_size", "n_parents"), [(TWO_LAYERS, 4, 8), (THREE_LAYERS, 8, 2)])
def test_fast_miner_matches_reference_with_flip_alignment(specs, input_size, n_parents):
    maps, init = random_maps(specs, 6, seed=11), random_init(specs, 2, seed=12)
    mirrored = random_maps(specs, 6, seed=16)  # unrelated maps: the orientations differ from image to image
    start = torch.tensor([True, False, False, True, False, True])
    params = MinerParams(nodes_per_filter=2, n_parents=n_parents, iterations=4, flip=True)
    fast = mine_graph(maps, specs, params, input_size=input_size, batch_size=4, device="cpu", init=init,
                      mirrored=mirrored, init_flips=start)
    slow = mine_reference(numpy_maps(maps), specs, params, input_size=input_size, init=numpy_maps(init),
                          mirrored=numpy_maps(mirrored), flips=start.tolist())
    assert fast.meta["flips"] == slow.meta["flips"] and fast.meta["flips"] != start.tolist()  # re-chosen by EM
    assert 0 < sum(fast.meta["flips"]) < len(start)
    for spec in specs:
        name = spec.name
        torch.testing.assert_close(fast.mu[name], slow.mu[name], atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.sigma[name], slow.sigma[name], atol=1e-5, rtol=0)
        np.testing.assert_allclose(fast.meta["history"][name], slow.meta["history"][name], rtol=1e-5)
        assert [sorted(k for k in row if k >= 0) for row in fast.parents[name].flatten(0, 1).tolist()] == \
               [sorted(row) for row in slow.parents[name].flatten(0, 1).tolist()]
    ours, ref = infer(fast, maps, batch_size=4, mirrored=mirrored), infer_reference(fast, numpy_maps(maps),
                                                                                     numpy_maps(mirrored))
    assert 0 < int(ours.flips.sum()) < len(start)
    for name, (positions, scores) in ref.items():
        np.testing.assert_allclose(ours.positions[name].numpy(), positions, atol=1e-6)
        np.testing.assert_allclose(ours.scores[name].numpy(), scores, rtol=1e-5, atol=1e-7)


FLIP_SPECS = [LayerSpec("low", 2, 16, 16, 2.0, 0.5), LayerSpec("up", 2, 8, 8, 4.0, 1.5)]  # 32 px input


def facing_maps(n: int, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor,
                                            torch.Tensor]:
    """Toy objects facing left (canonical) or right (odd images: every map mirrored): upper channel 0 peaks near
    column 1, channel 1 near column 5; each lower channel peaks at a fixed offset from an upper peak. Returns the
    maps, the maps of the mirror images, which images face right, and the upper channel-0 peak in pixels."""
    generator = torch.Generator().manual_seed(seed)
    upper = torch.rand(n, 2, 8, 8, generator=generator) * 0.1
    lower = torch.rand(n, 2, 16, 16, generator=generator) * 0.1
    peaks = torch.zeros(n, 2)
    for image in range(n):
        jitter = torch.randint(-1, 2, (2,), generator=generator)
        first, second = torch.tensor([3, 1]) + jitter, torch.tensor([5, 5]) + jitter
        upper[image, 0] += blob(8, 8, *first.tolist(), 1.0)
        upper[image, 1] += blob(8, 8, *second.tolist(), 1.0)
        lower[image, 0] += blob(16, 16, *(2 * first + torch.tensor([1, 2])).tolist(), 1.0)
        lower[image, 1] += blob(16, 16, *(2 * second + torch.tensor([-2, 1])).tolist(), 1.0)
        peaks[image] = 1.5 + 4 * first
    right = torch.arange(n) % 2 == 1
    canonical = {"low": lower, "up": upper}
    maps = {k: torch.where(right[:, None, None, None], v.flip(-1), v) for k, v in canonical.items()}
    mirrored = {k: v.flip(-1) for k, v in maps.items()}
    peaks[right, 1] = 31 - peaks[right, 1]
    return maps, mirrored, right, peaks


def test_flip_alignment_explains_both_facings_with_the_same_nodes():
    maps, mirrored, right, _ = facing_maps(40, seed=14)
    params = MinerParams(nodes_per_filter=2, n_parents=1, iterations=8, sigma_max=0.25, flip=True)
    graph = mine_graph(maps, FLIP_SPECS, params, input_size=32, device="cpu", mirrored=mirrored)
    flips = torch.tensor(graph.meta["flips"])
    assert torch.equal(flips, right) or torch.equal(flips, ~right)  # one orientation for all, up to a global flip
    test_maps, test_mirrored, test_right, peaks = facing_maps(20, seed=15)
    result = infer(graph, test_maps, mirrored=test_mirrored)
    assert torch.equal(result.flips, test_right if torch.equal(flips, right) else ~test_right)
    positions = result.positions["up"][:, 0] * 32  # (n, N, 2) pixels, in each image's own frame
    best = int(result.scores["up"][:, 0].mean(0).argmax())
    assert (positions[:, best] - peaks).norm(dim=-1).max() <= 4.0  # within a unit, left- and right-facing alike
    plain = infer(graph, test_maps)  # without mirror images every image is explained as it is
    assert plain.flips is None and not torch.allclose(plain.positions["up"], result.positions["up"])
    with pytest.raises(ValueError, match="mirrored"):
        mine_graph(maps, FLIP_SPECS, params, input_size=32, device="cpu")


def test_mining_features_stay_in_memory_when_small_and_stream_otherwise(monkeypatch):
    from helpers.explanatory_graph import pipeline
    from helpers.models.nets import small_vgg

    torch.manual_seed(0)
    net = small_vgg(num_outputs=1)
    specs = layer_specs(net, ["conv4_1", "conv4_2"])
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    whole = pipeline.mining_features(net, images, specs, True, torch.device("cpu"))
    assert isinstance(whole, dict) and whole["conv4_2"].shape == (5, 128, 8, 8)
    monkeypatch.setattr(pipeline, "FEATURE_MEMORY", 0)
    streamed = pipeline.mining_features(net, images, specs, True, torch.device("cpu"))
    assert callable(streamed)
    torch.testing.assert_close(torch.cat([batch["conv4_2"] for batch in streamed()]), whole["conv4_2"])
    plain = net_features(net, images.flip(-1), ["conv4_2"], device="cpu")["conv4_2"]
    torch.testing.assert_close(plain, whole["conv4_2"])  # mirror=True: the mirror images' maps


def test_cpu_threads_are_limited_inside_the_block_and_restored():
    from helpers.explanatory_graph.miner import cpu_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads(torch.device("cpu"), 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(torch.device("cpu"), None):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
