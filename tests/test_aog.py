"""And-Or graph part localization (explanatory graph papers, Experiment 3) and its baselines: planted patterns are
found and localize the part exactly, predictions mirror with the crop, every method beats random guessing on easy
data, the selection prefers patterns tied to the part, and the normalized distance is wired as specified."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import aog
from helpers.aog import (
    AndOrGraph,
    Examples,
    FilterPartDetectors,
    FilterPeaks,
    GraphNodes,
    MeanPrior,
    PatchSVM,
    Patterns,
    Views,
    evaluate,
    mirror_points,
)
from helpers.config import resolve
from helpers.data.arrays import PartArrays
from helpers.explanatory_graph import LayerSpec, MinerParams, mine_graph

SIZE = 32


class Listed(Patterns):
    """Synthetic inference: the "maps" carry the patterns' normalised positions and scores themselves."""

    @property
    def layers(self) -> list[str]:
        return ["listed"]

    def layer_index(self) -> torch.Tensor:
        return torch.zeros(0, dtype=torch.long)

    def raw(self, maps):
        return maps["pos"], maps["score"]


def listed_views(positions: torch.Tensor, scores: torch.Tensor) -> Views:
    mirrored = mirror_points(positions * SIZE, SIZE) / SIZE
    return Views({"pos": positions, "score": scores}, {"pos": mirrored, "score": scores}, SIZE)


def planted(n: int, generator: torch.Generator, patterns: int = 30, node: int = 7,
            offset: tuple[float, float] = (-0.1, 0.05), strength: float = 5.0):
    """Integer-pixel part centres; pattern ``node`` sits at centre + ``offset`` (normalised) with score
    ``strength``, the others anywhere with scores in [0, 1]."""
    centres = torch.randint(8, 24, (n, 2), generator=generator).float()
    positions = torch.rand(n, patterns, 2, generator=generator)
    scores = torch.rand(n, patterns, generator=generator)
    positions[:, node] = centres / SIZE + torch.tensor(offset)
    scores[:, node] = strength
    return centres, positions, scores


def listed_examples(generator: torch.Generator, **kwargs) -> Examples:
    centres, positions, scores = planted(3, generator, **kwargs)
    pool = {"pos": torch.rand(10, positions.shape[1], 2, generator=generator), "score": torch.ones(10, scores.shape[1])}
    boxes = torch.cat([centres - 3, centres + 3], 1)
    return Examples(listed_views(positions, scores), centres, boxes, pool)


@pytest.mark.parametrize("or_rule", ["sum", "max"])
@pytest.mark.parametrize("k", [1, 5])
def test_a_planted_part_aligned_pattern_localizes_the_part_exactly(k, or_rule):
    generator = torch.Generator().manual_seed(0)
    examples = listed_examples(generator)
    model = AndOrGraph(Listed(), k=k, vote_spread=0.02, select_spread=0.15, or_rule=or_rule, flip=False)
    model.fit(examples)
    assert (model.chosen[:, 0] == 7).all()
    torch.testing.assert_close(model.delta[:, 0], torch.tensor([[0.1, -0.05]]).expand(3, 2))
    centres, positions, scores = planted(40, generator)
    prediction = model.predict(listed_views(positions, scores))
    torch.testing.assert_close(prediction.centres, centres)


def test_the_selection_prefers_patterns_tied_to_the_part_over_the_strongest():
    generator = torch.Generator().manual_seed(1)
    examples = listed_examples(generator, strength=2.0)
    examples.views.maps["score"][:, 3] = 10.0  # the strongest pattern, but far from the part (random place)
    examples.views.maps["pos"][:, 3] = (examples.centres / SIZE + 0.4) % 1
    model = AndOrGraph(Listed(), k=1, vote_spread=0.02, select_spread=0.1, flip=False).fit(examples)
    assert model.chosen.flatten().tolist() == [7, 7, 7]
    near_only = AndOrGraph(Listed(), k=1, vote_spread=0.02, select_spread=math.inf, flip=False).fit(examples)
    assert near_only.chosen.flatten().tolist() == [3, 3, 3]  # ignoring the distance picks the strongest


def test_an_aog_on_a_mined_explanatory_graph_localizes_a_planted_part():
    """Channel 0 of both layers fires on the part (which moves), channel 1 on a distractor elsewhere; the part is
    half a pixel off the lower unit centres, so its centres are whole pixels the vote grid can hit exactly."""
    specs = [LayerSpec("low", 2, 16, 16, 2.0, 0.5), LayerSpec("up", 2, 8, 8, 4.0, 1.5)]
    generator = torch.Generator().manual_seed(2)
    n = 48
    units = torch.randint(4, 12, (n, 2), generator=generator)  # the part's lower-layer unit
    maps = {"low": torch.rand(n, 2, 16, 16, generator=generator) * 0.1,
            "up": torch.rand(n, 2, 8, 8, generator=generator) * 0.1}
    images = torch.arange(n)
    maps["low"][images, 0, units[:, 0], units[:, 1]] += 1.0
    maps["up"][images, 0, units[:, 0] // 2, units[:, 1] // 2] += 1.0
    elsewhere = (units + 8) % 16
    maps["low"][images, 1, elsewhere[:, 0], elsewhere[:, 1]] += 1.0
    maps["up"][images, 1, elsewhere[:, 0] // 2, elsewhere[:, 1] // 2] += 1.0
    params = MinerParams(nodes_per_filter=2, n_parents=1, iterations=8, sigma_max=0.3)
    graph = mine_graph(maps, specs, params, input_size=SIZE, batch_size=16, device="cpu")
    centres = 0.5 + 2 * units.float() + 0.5  # whole pixels
    mirrored = {name: value.flip(-1) for name, value in maps.items()}
    views = Views(maps, mirrored, SIZE)
    train = torch.arange(3)
    examples = Examples(views.subset(train), centres[train], torch.cat([centres - 2, centres + 2], 1)[train],
                        maps)
    model = AndOrGraph(GraphNodes(graph), k=2, vote_spread=0.03, select_spread=0.05, flip=False).fit(examples)
    test = torch.arange(3, n)
    prediction = model.predict(views.subset(test))
    torch.testing.assert_close(prediction.centres, centres[test])


def random_views(n: int, seed: int) -> Views:
    generator = torch.Generator().manual_seed(seed)
    maps = {"a": torch.rand(n, 4, 8, 8, generator=generator), "b": torch.rand(n, 3, 4, 4, generator=generator)}
    mirrored = {name: torch.rand(value.shape, generator=generator) for name, value in maps.items()}
    return Views(maps, mirrored, SIZE)


SPECS = [LayerSpec("a", 4, 8, 8, 4.0, 1.5), LayerSpec("b", 3, 4, 4, 8.0, 3.5)]


def all_methods() -> list[aog.Localizer]:
    return [AndOrGraph(FilterPeaks(SPECS, SIZE), 3, 0.05, 0.1, "sum"),
            AndOrGraph(FilterPeaks(SPECS, SIZE), 3, 0.05, 0.1, "max"),
            FilterPartDetectors(FilterPeaks(SPECS, SIZE), 2, 0.05), PatchSVM(SPECS, SIZE, c=0.1), MeanPrior()]


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: f"{m.name}-{getattr(m, 'or_rule', '')}")
def test_a_mirrored_crop_gets_the_mirrored_prediction(method):
    examples = Examples(random_views(3, 3), torch.tensor([[10.0, 12.0], [16.0, 20.0], [20.0, 8.0]]),
                        torch.tensor([[6.0, 8, 14, 16], [12, 16, 20, 24], [16, 4, 24, 12]]),
                        random_views(10, 4).maps)
    method.fit(examples)
    views = random_views(12, 5)
    plain, mirrored = method.predict(views), method.predict(views.swapped())
    if method.flip:
        assert plain.flipped.any() and not plain.flipped.all()  # both orientations won somewhere
        torch.testing.assert_close(mirror_points(mirrored.centres, SIZE), plain.centres)
        assert torch.equal(mirrored.flipped, ~plain.flipped)
    else:  # the prior ignores the crop
        torch.testing.assert_close(mirrored.centres, plain.centres)


def easy_views(centres: torch.Tensor, generator: torch.Generator) -> Views:
    """Maps where channel 0 of both layers peaks on the part (and on the mirrored part in the mirror image)."""
    def draw(points: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = {s.name: torch.rand(len(points), s.channels, s.height, s.width, generator=generator) * 0.3
                for s in SPECS}
        for spec in SPECS:
            unit = ((points - spec.centre) / spec.stride).round().long().clamp(0, spec.height - 1)
            maps[spec.name][torch.arange(len(points)), 0, unit[:, 0], unit[:, 1]] += 2.0
        return maps
    return Views(draw(centres), draw(mirror_points(centres, SIZE)), SIZE)


def test_every_method_beats_random_guessing_on_easy_data():
    generator = torch.Generator().manual_seed(6)
    centres = 1.5 + 4 * torch.randint(2, 6, (43, 2), generator=generator).float()  # on unit centres, mid-crop
    views = easy_views(centres, generator)
    examples = Examples(views.subset(torch.arange(3)), centres[:3], torch.cat([centres - 3, centres + 3], 1)[:3],
                        views.subset(torch.arange(3, 13)).maps)
    test = torch.arange(13, 43)
    truth, boxes = centres[test], torch.cat([centres - 3, centres + 3], 1)[test]
    guesses = torch.rand(2000, 2, generator=generator) * (SIZE - 1)
    random_distance = ((guesses[:, None] - truth).norm(dim=-1) / math.hypot(SIZE, SIZE)).mean().item()
    for method in all_methods():
        found = evaluate(method.fit(examples), views.subset(test), truth, boxes).distance.value
        assert found < 0.75 * random_distance, (method.name, found, random_distance)
        if not isinstance(method, MeanPrior):  # the peaks give the part away
            assert found < 0.08, (method.name, found)


def test_normalized_distance_and_inside_rate_by_hand():
    prior = MeanPrior()
    views = random_views(2, 7)
    prior.fit(Examples(views, torch.tensor([[10.0, 10.0], [14.0, 18.0]]), torch.zeros(2, 4), views.maps))
    truth = torch.tensor([[12.0, 14.0], [12.0 + 3.0, 14.0 + 4.0]])  # the prediction is (12, 14) for both
    boxes = torch.tensor([[10.0, 10.0, 14.0, 16.0], [14.0, 17.0, 16.0, 19.0]])
    found = evaluate(prior, views, truth, boxes)
    assert found.distance.per_object.tolist() == pytest.approx([0.0, 5.0 / math.hypot(SIZE, SIZE)])
    assert found.distance.value == pytest.approx(2.5 / math.hypot(SIZE, SIZE))
    assert found.distance.inside_rate == pytest.approx(0.5)


def test_part_boxes_and_the_seeded_choice_of_annotations():
    labels = torch.zeros(4, 8, 8, dtype=torch.uint8)
    labels[0, 2:4, 3:7] = 1
    labels[1, 5, 1] = 1
    labels[2, 1:3, 1:3] = 2  # another part only
    labels[3, 0:8, 6:8] = 1
    landmarks = torch.full((4, 1, 2), 3.0)
    counts = torch.tensor([[1], [1], [0], [2]], dtype=torch.uint8)
    arrays = PartArrays(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
                        torch.zeros(4, dtype=torch.bool), ["bird"] * 4, ("bird",), ("head",), landmarks, counts,
                        ("head", "tail"), labels)
    boxes = aog.part_boxes(arrays, "head")
    assert boxes[:2].tolist() == [[2, 3, 3, 6], [5, 1, 5, 1]] and boxes[2].isnan().all()
    assert boxes[3].tolist() == [0, 6, 7, 7]
    assert aog.choose_examples(arrays, "head", 2, seed=0).sort().values.tolist() == [0, 1]  # one instance, visible
    with pytest.raises(ValueError, match="only 2 crops"):
        aog.choose_examples(arrays, "head", 3, seed=0)


def test_profiles_resolve_with_the_aog_section():
    settings = resolve("smoke", sections=[aog.PROFILES])
    assert settings["aog_templates"] == 3 and settings["aog_part"] == "head"
    with pytest.raises(ValueError, match="or_rule"):
        AndOrGraph(Listed(), 1, 0.05, 0.1, or_rule="mean")


def test_predicting_on_parsed_patterns_matches_predicting_on_maps():
    examples = Examples(random_views(3, 8), torch.tensor([[10.0, 12.0], [16.0, 20.0], [20.0, 8.0]]),
                        torch.tensor([[6.0, 8, 14, 16], [12, 16, 20, 24], [16, 4, 24, 12]]), random_views(10, 9).maps)
    model = AndOrGraph(FilterPeaks(SPECS, SIZE), 3, 0.05, 0.1).fit(examples)
    views = random_views(12, 10)
    direct = model.predict(views)
    parsed = model.predict_parsed(model.patterns(views.maps), model.patterns(views.mirrored), SIZE)
    assert torch.equal(direct.centres, parsed.centres) and torch.equal(direct.flipped, parsed.flipped)
