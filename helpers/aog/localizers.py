"""Few-shot part localizers behind one interface: ``fit(examples) -> self``, ``predict(views) -> Prediction``.

- :class:`AndOrGraph`: the AOG of the explanatory graph papers (Experiment 3; Fig. 8 arXiv / Fig. 10 AAAI):
  semantic part (OR) -> m part templates (AND, one per annotation) -> K latent patterns each (OR) -> the units of
  the pattern's filter (terminals). On explanatory-graph nodes it is "ours"; on raw filters it is the
  supervised-AOG-like baseline of Table 3 (arXiv) / Table 5 (AAAI).
- :class:`FilterPartDetectors`: CNN-PDD-like (Simon et al. 2014): the K filters whose peaks sit nearest the
  annotated part, one shared template.
- :class:`PatchSVM`: fc7+linearSVM-like: CNN features of every patch (a unit's receptive field), a linear SVM.
- :class:`MeanPrior`: the mean annotated part position, the floor every method must beat.

Every localizer may also look at the mirror image and keep the better-scoring answer (``flip``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import Tensor

from ..config import check_choice
from ..explanatory_graph import LayerSpec
from .data import Examples, Views, mirror_points
from .patterns import Patterns

ELEMENT_BUDGET = 1 << 23  # largest (images x patterns x grid) chunk of a vote


@dataclass
class Prediction:
    """Predicted part centres (n, 2) pixels (y, x), their scores (n,), and whether the mirror image won (n,)."""

    centres: Tensor
    scores: Tensor
    flipped: Tensor


def keep_better(plain: tuple[Tensor, Tensor], mirrored: tuple[Tensor, Tensor] | None, size: int) -> Prediction:
    """Combine the answers (centres, scores) on the crops and on their mirror images: the mirror image's answer,
    mapped back into the crop, wins where it scores higher (ties: the crop's own). ``mirrored=None`` (no flip):
    the crops' own answers."""
    if mirrored is None:
        return Prediction(*plain, torch.zeros_like(plain[1], dtype=torch.bool))
    better = mirrored[1] > plain[1]
    centres = torch.where(better[:, None], mirror_points(mirrored[0], size), plain[0])
    return Prediction(centres, torch.where(better, mirrored[1], plain[1]), better)


class Localizer(ABC):
    """A few-shot part localizer: learn from annotated :class:`Examples`, predict part centres on :class:`Views`."""

    name: str
    flip: bool

    @abstractmethod
    def fit(self, examples: Examples) -> Localizer:
        """Learn from the m annotated crops."""

    @abstractmethod
    def locate(self, maps: Mapping[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
        """Centres (n, 2) pixels and scores (n,) on crops given by their maps (no flip)."""

    def predict(self, views: Views) -> Prediction:
        """Part centres on ``views``; with ``flip`` the mirror images are tried too and the better answer kept."""
        size = views.input_size
        mirrored = self.locate(views.mirrored, size) if self.flip else None
        return keep_better(self.locate(views.maps, size), mirrored, size)


def vote(targets: Tensor, weights: Tensor, spread: float, size: int) -> tuple[Tensor, Tensor]:
    """Patterns vote for the part at ``targets`` (n, K, 2) normalised with ``weights`` (n, K), each vote a Gaussian
    of std ``spread`` (normalised units) with peak 1; the vote map lives on the pixel grid (every ``size // 64``-th
    pixel). Returns its argmax (n, 2) pixels and its maximum (n,): the summed weight of the agreeing patterns."""
    step = max(1, size // 64)
    grid = torch.arange(0, size, step, device=targets.device, dtype=targets.dtype)
    scaled = grid / size
    n, k = weights.shape
    chunk = max(1, ELEMENT_BUDGET // max(1, k * len(grid)))
    centres, values = [], []
    for start in range(0, n, chunk):
        part = targets[start : start + chunk, :, :, None]  # (c, K, 2, 1)
        along = torch.exp(-(scaled - part).pow(2) / (2 * spread**2))  # (c, K, 2, G)
        votes = torch.bmm((along[:, :, 0] * weights[start : start + chunk, :, None]).mT, along[:, :, 1])  # (c, G, G)
        value, index = votes.flatten(1).max(1)
        centres.append(torch.stack([grid[index // len(grid)], grid[index % len(grid)]], -1))
        values.append(value)
    return torch.cat(centres), torch.cat(values)


OR_RULES = ("sum", "max")


class AndOrGraph(Localizer):
    """The four-level AOG (Experiment 3). Learning (one template per annotated crop): parse every pattern on the
    crop, rank the patterns by S_V exp(-|delta_V|^2 / 2 s^2) (strongly triggered and close to the part; delta_V =
    part centre - p_V, s = ``select_spread``) and keep the top ``k`` with their delta_V. Inference: every kept
    pattern votes for p_V + delta_V with weight S_V (std ``vote_spread``); a template's vote map peaks where its
    patterns agree (AND). The semantic part (OR) either adds its templates' vote maps (``or_rule="sum"``: the
    templates as a mixture, sum-product parse) or takes the template with the highest peak (``"max"``: the best
    template, max-product parse); its answer is the argmax and its score the peak."""

    def __init__(self, patterns: Patterns, k: int, vote_spread: float, select_spread: float, or_rule: str = "sum",
                 flip: bool = True, name: str = "aog") -> None:
        if k < 1:
            raise ValueError(f"k (patterns per template) must be >= 1, got {k}")
        self.patterns, self.k, self.vote_spread, self.select_spread = patterns, k, vote_spread, select_spread
        self.or_rule, self.flip, self.name = check_choice("or_rule", or_rule, OR_RULES), flip, name
        self.chosen: Tensor | None = None  # (T, K) pattern indices per template
        self.delta: Tensor | None = None  # (T, K, 2) normalised displacement pattern -> part centre

    def fit(self, examples: Examples) -> AndOrGraph:
        self.patterns.fit(examples.pool)
        size = examples.views.input_size
        return self.learn(*self.patterns(examples.views.maps), examples.centres / size)

    def learn(self, positions: Tensor, scores: Tensor, centres: Tensor) -> AndOrGraph:
        """The templates from patterns parsed on the annotated crops (``positions`` (m, P, 2), ``scores`` (m, P))
        with their part ``centres`` (m, 2) normalised."""
        self.chosen, self.delta = self.select(scores, centres.to(positions)[:, None] - positions)
        return self

    def select(self, scores: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        """One template per crop: the ``k`` patterns of highest S_V exp(-|delta_V|^2 / 2 s^2) and their delta_V.
        ``scores`` (m, P), ``delta`` (m, P, 2) -> (m, K), (m, K, 2)."""
        rank = scores * torch.exp(-delta.pow(2).sum(-1) / (2 * self.select_spread**2))
        chosen = rank.topk(min(self.k, rank.shape[1]), dim=1).indices
        return chosen, delta.gather(1, chosen[..., None].expand(-1, -1, 2))

    def _votes(self, positions: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
        """Every template's vote targets (n, T, K, 2) normalised and weights (n, T, K)."""
        if self.chosen is None or self.delta is None:
            raise RuntimeError(f"{self.name}: call fit() before predicting")
        chosen = self.chosen.to(positions.device)
        return positions[:, chosen] + self.delta.to(positions), scores[:, chosen]

    def templates(self, positions: Tensor, scores: Tensor, size: int) -> tuple[Tensor, Tensor]:
        """Every template's own answer on crops whose patterns were parsed to ``positions`` (n, P, 2) with
        ``scores`` (n, P): centres (n, T, 2) pixels and peak scores (n, T)."""
        targets, weights = self._votes(positions, scores)
        answers = [vote(targets[:, t], weights[:, t], self.vote_spread, size) for t in range(targets.shape[1])]
        return torch.stack([a[0] for a in answers], 1), torch.stack([a[1] for a in answers], 1)

    def decide(self, positions: Tensor, scores: Tensor, size: int) -> tuple[Tensor, Tensor]:
        """The OR node's centre (n, 2) and score (n,) on crops with parsed patterns."""
        if self.or_rule == "sum":
            targets, weights = self._votes(positions, scores)
            return vote(targets.flatten(1, 2), weights.flatten(1), self.vote_spread, size)
        centres, values = self.templates(positions, scores, size)
        best = values.argmax(1)
        rows = torch.arange(len(best), device=best.device)
        return centres[rows, best], values[rows, best]

    def locate(self, maps: Mapping[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
        return self.decide(*self.patterns(maps), size)

    def predict_parsed(self, plain: tuple[Tensor, Tensor], mirrored: tuple[Tensor, Tensor], size: int) -> Prediction:
        """:meth:`predict` on crops whose patterns were parsed already: (positions, scores) on the crops and on their
        mirror images, as the pattern source returns them."""
        return keep_better(self.decide(*plain, size), self.decide(*mirrored, size) if self.flip else None, size)


class FilterPartDetectors(AndOrGraph):
    """CNN-PDD-like (Simon et al. 2014, a baseline of Tables 2-5): the ``k`` patterns (raw filters) whose peaks
    sit nearest the annotated part on average over the m crops, one template shared by all crops, each pattern
    voting with its mean displacement to the part."""

    def __init__(self, patterns: Patterns, k: int, vote_spread: float, flip: bool = True,
                 name: str = "raw_filters") -> None:
        super().__init__(patterns, k, vote_spread, select_spread=math.inf, or_rule="max", flip=flip, name=name)

    def select(self, scores: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        distance = delta.norm(dim=-1).mean(0)  # (P,)
        chosen = distance.topk(min(self.k, len(distance)), largest=False).indices
        return chosen[None], delta[:, chosen].mean(0)[None]


class PatchSVM(Localizer):
    """fc7+linearSVM-like (Tables 2-5): every unit of the finest layer of ``specs`` is a patch (its receptive
    field) described by the maps of all layers at its position; a linear SVM (scikit-learn ``LinearSVC``, features
    standardised) learns part patches (within ``positive_radius`` of an annotated centre, normalised units) vs.
    patches outside the part box, on the annotated crops and on their mirror images; the best-scoring patch's
    centre is the answer."""

    def __init__(self, specs: Sequence[LayerSpec], input_size: int, c: float = 0.001, positive_radius: float = 0.07,
                 flip: bool = True, name: str = "patch_svm") -> None:
        self.specs, self.input_size, self.c, self.positive_radius = list(specs), input_size, c, positive_radius
        self.flip, self.name = flip, name
        finest = min(self.specs, key=lambda spec: spec.stride)
        rows, cols = finest.axes(input_size, dtype=torch.float64)
        self.grid = torch.cartesian_prod(rows, cols)  # (G, 2) normalised patch centres
        self.units = {spec.name: self._nearest_units(spec) for spec in self.specs}  # (G,) flat unit per layer
        self.weights: dict[str, Tensor] | None = None
        self.bias = 0.0

    def _nearest_units(self, spec: LayerSpec) -> Tensor:
        rows, cols = spec.axes(self.input_size, dtype=torch.float64)
        row = (self.grid[:, 0, None] - rows).abs().argmin(1)
        col = (self.grid[:, 1, None] - cols).abs().argmin(1)
        return row * spec.width + col

    def features(self, maps: Mapping[str, Tensor]) -> Tensor:
        """(n, G, D) patch descriptors: every layer's channels at each patch centre."""
        return torch.cat([maps[s.name].flatten(2)[:, :, self.units[s.name].to(maps[s.name].device)].mT
                          for s in self.specs], -1)

    def _patches(self, examples: Examples) -> tuple[Tensor, Tensor]:
        """Descriptors (p, D) and labels (p,) of the part patches and of the patches outside the part box."""
        features = self.features(examples.views.maps).double().cpu()  # (m, G, D)
        pixels = self.grid * self.input_size
        centres = examples.centres.double() / self.input_size
        distance = (self.grid - centres[:, None]).norm(dim=-1)  # (m, G)
        positive = (distance <= self.positive_radius) | (distance == distance.amin(1, keepdim=True))
        boxes = examples.boxes.double()
        inside = ((boxes[:, None, 0] <= pixels[:, 0]) & (pixels[:, 0] <= boxes[:, None, 2])
                  & (boxes[:, None, 1] <= pixels[:, 1]) & (pixels[:, 1] <= boxes[:, None, 3]))
        use = positive | ~inside
        return features[use], positive[use]

    def fit(self, examples: Examples) -> PatchSVM:
        patches = [self._patches(found) for found in (examples, examples.mirrored())]
        model = make_pipeline(StandardScaler(), LinearSVC(C=self.c, class_weight="balanced", max_iter=20000))
        model.fit(torch.cat([p[0] for p in patches]).numpy(), torch.cat([p[1] for p in patches]).numpy())
        scaler, svm = model.steps[0][1], model.steps[1][1]
        coef = svm.coef_[0] / np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
        self.bias = float(svm.intercept_[0] - scaler.mean_ @ coef)
        split = np.cumsum([spec.channels for spec in self.specs])[:-1]
        self.weights = {s.name: torch.from_numpy(w) for s, w in zip(self.specs, np.split(coef, split), strict=True)}
        return self

    def locate(self, maps: Mapping[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
        if self.weights is None:
            raise RuntimeError(f"{self.name}: call fit() before predicting")
        score = self.bias
        for spec in self.specs:
            value = maps[spec.name]
            per_unit = torch.einsum("nck,c->nk", value.flatten(2).double(), self.weights[spec.name].to(value.device))
            score = score + per_unit[:, self.units[spec.name].to(value.device)]
        best, where = score.max(1)
        return (self.grid.to(best.device)[where] * size).float(), best.float()


class MeanPrior(Localizer):
    """The mean annotated part position in the crop frame, whatever the crop (no flip: it has no score)."""

    def __init__(self, name: str = "mean_offset_prior") -> None:
        self.name, self.flip = name, False
        self.centre: Tensor | None = None

    def fit(self, examples: Examples) -> MeanPrior:
        self.centre = examples.centres.float().mean(0)
        return self

    def locate(self, maps: Mapping[str, Tensor], size: int) -> tuple[Tensor, Tensor]:
        if self.centre is None:
            raise RuntimeError(f"{self.name}: call fit() before predicting")
        first = next(iter(maps.values()))
        n = len(first)
        return self.centre.to(first.device).expand(n, 2).clone(), torch.zeros(n, device=first.device)
