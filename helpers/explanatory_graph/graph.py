"""The explanatory graph as an object: nodes, edges, metadata; save/load (JSON + npz) and networkx export.

Positions are (y, x) in normalised image coordinates: pixel / input size (docs/metrics.md, "Unit -> image plane").
Node k of a layer is filter ``k // N`` and node ``k % N`` of that filter (N nodes per filter).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..io import _atomic_write, atomic_write_json

if TYPE_CHECKING:
    import networkx as nx

FORMAT = "explanatory-graph"
VERSION = 1
STAT_NAMES = ("score_mean", "score_top", "score_total")


class GraphFileError(ValueError):
    """A saved graph cannot be read: missing, corrupt, or written by another format version."""


@dataclass(frozen=True)
class LayerSpec:
    """A conv layer's output: channel count, map size and receptive-field geometry (stride, centre in pixels)."""

    name: str
    channels: int
    height: int
    width: int
    stride: float
    centre: float

    def axes(self, input_size: int, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised y positions of the rows and x positions of the columns (unit i -> (c + s i) / size)."""
        rows = (self.centre + self.stride * torch.arange(self.height, device=device, dtype=torch.float64)) / input_size
        cols = (self.centre + self.stride * torch.arange(self.width, device=device, dtype=torch.float64)) / input_size
        return rows.to(dtype), cols.to(dtype)

    def spacing(self, input_size: int) -> float:
        """Distance between neighbouring units in normalised image units."""
        return self.stride / input_size


@dataclass(frozen=True)
class Node:
    layer: str
    filter: int
    index: int  # within the filter
    mu: tuple[float, float]
    sigma: float
    score_mean: float
    score_top: float
    score_total: float

    @property
    def key(self) -> str:
        return f"{self.layer}/{self.filter}/{self.index}"


@dataclass(frozen=True)
class Edge:
    parent: str  # node key in the upper layer
    child: str  # node key in the lower layer
    displacement: tuple[float, float]  # mu_child - mu_parent (Eq. 4: mu_V - mu_V')


@dataclass
class ExplanatoryGraph:
    """Mined graph. Per layer: ``mu`` (C, N, 2), ``sigma`` (C, N), ``parents`` (C, N, M) flat indices of nodes of
    the layer above (-1: none; empty for the top layer), ``norm`` (2, C) the per-channel (offset, scale) of F(x),
    ``stats[name]`` (C, N) score statistics on the mining images. ``specs`` run bottom to top."""

    specs: tuple[LayerSpec, ...]
    input_size: int
    mu: dict[str, torch.Tensor]
    sigma: dict[str, torch.Tensor]
    parents: dict[str, torch.Tensor]
    norm: dict[str, torch.Tensor]
    stats: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- structure -------------------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Layer names, bottom to top."""
        return [spec.name for spec in self.specs]

    def spec(self, layer: str) -> LayerSpec:
        for spec in self.specs:
            if spec.name == layer:
                return spec
        raise KeyError(f"the graph has no layer {layer!r}; layers: {', '.join(self.layers)}")

    def upper(self, layer: str) -> str | None:
        """The layer above ``layer`` (None for the top layer)."""
        names = self.layers
        index = names.index(self.spec(layer).name)
        return names[index + 1] if index + 1 < len(names) else None

    def nodes_per_filter(self, layer: str) -> int:
        return int(self.mu[layer].shape[1])

    def node_key(self, layer: str, flat: int) -> str:
        n = self.nodes_per_filter(layer)
        return f"{layer}/{flat // n}/{flat % n}"

    def nodes(self, layer: str | None = None) -> list[Node]:
        """Every node (of one layer or of all), in flat order."""
        out = []
        for name in [layer] if layer else self.layers:
            mu, sigma = self.mu[name].tolist(), self.sigma[name].tolist()
            stats = [self.stats[name][stat].tolist() for stat in STAT_NAMES]
            for c, n in np.ndindex(*self.sigma[name].shape):
                out.append(Node(name, c, n, tuple(mu[c][n]), sigma[c][n], *(values[c][n] for values in stats)))
        return out

    def edges(self, layer: str | None = None) -> list[Edge]:
        """Edges from the layer above to ``layer`` (or all edges), with displacement mu_V - mu_V'."""
        out = []
        for name in [layer] if layer else self.layers:
            upper = self.upper(name)
            if upper is None:
                continue
            child_mu, parent_mu = self.mu[name].reshape(-1, 2), self.mu[upper].reshape(-1, 2)
            parents = self.parents[name].reshape(child_mu.shape[0], -1)
            for child, slot in (parents >= 0).nonzero().tolist():
                flat = int(parents[child, slot])
                shift = (child_mu[child] - parent_mu[flat]).tolist()
                out.append(Edge(self.node_key(upper, flat), self.node_key(name, child), (shift[0], shift[1])))
        return out

    def rank_nodes(self, layer: str) -> torch.Tensor:
        """Flat node indices of ``layer`` sorted by decreasing mean top-k score (Table 1 ranking)."""
        return torch.argsort(self.stats[layer]["score_top"].flatten(), descending=True, stable=True)

    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``: nodes keyed ``layer/filter/index`` with their attributes, edges parent -> child."""
        import networkx as nx

        graph = nx.DiGraph(**{k: v for k, v in self.meta.items() if k in ("net", "category", "layers")})
        for node in self.nodes():
            graph.add_node(node.key, **asdict(node))
        for edge in self.edges():
            graph.add_edge(edge.parent, edge.child, displacement=edge.displacement)
        return graph

    def mirrored(self) -> ExplanatoryGraph:
        """The graph of horizontally flipped images: every mu_x becomes (size - 1) / size - mu_x."""
        axis = (self.input_size - 1) / self.input_size
        flip = torch.tensor([1.0, -1.0])
        mu = {name: m * flip.to(m.dtype) + torch.tensor([0.0, axis], dtype=m.dtype) for name, m in self.mu.items()}
        return replace(self, mu=mu, meta={**self.meta, "mirrored": not self.meta.get("mirrored", False)})

    # ---- persistence -----------------------------------------------------------------------------------------
    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for i, name in enumerate(self.layers):
            for key, value in (("mu", self.mu), ("sigma", self.sigma), ("parents", self.parents),
                               ("norm", self.norm)):
                arrays[f"L{i}_{key}"] = value[name].cpu().numpy()
            for stat in STAT_NAMES:
                arrays[f"L{i}_{stat}"] = self.stats[name][stat].cpu().numpy()
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.npz`` (arrays) then ``<path>.json`` (format, version, specs, meta, npz checksum), atomically.
        Returns the JSON path."""
        json_path, npz_path = _paths(path)
        buffer = io.BytesIO()
        np.savez(buffer, **self._arrays())
        data = buffer.getvalue()
        _atomic_write(npz_path, lambda tmp: tmp.write_bytes(data))
        header = {"format": FORMAT, "version": VERSION, "input_size": self.input_size,
                  "specs": [asdict(spec) for spec in self.specs], "meta": self.meta,
                  "npz": npz_path.name, "npz_sha256": hashlib.sha256(data).hexdigest()}
        return atomic_write_json(json_path, header)

    @classmethod
    def load(cls, path: str | Path) -> ExplanatoryGraph:
        """Read a graph written by :meth:`save`; raises :class:`GraphFileError` saying what is wrong."""
        json_path, npz_path = _paths(path)
        header = _read_header(json_path)
        try:
            data = npz_path.read_bytes()
        except OSError as error:
            raise GraphFileError(f"{npz_path} is missing or unreadable ({error}); re-mine the graph") from error
        if hashlib.sha256(data).hexdigest() != header.get("npz_sha256"):
            raise GraphFileError(f"{npz_path} does not match {json_path.name} (checksum differs: corrupt or from "
                                 "another save); delete both files and re-mine the graph")
        try:
            specs = tuple(LayerSpec(**spec) for spec in header["specs"])
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                tensors = {key: torch.from_numpy(arrays[key].copy()) for key in arrays.files}
            per_layer = {key: {s.name: tensors[f"L{i}_{key}"] for i, s in enumerate(specs)}
                         for key in ("mu", "sigma", "parents", "norm", *STAT_NAMES)}
        except (KeyError, TypeError, ValueError) as error:
            message = f"{json_path} / {npz_path.name} are incomplete ({error!r}); re-mine the graph"
            raise GraphFileError(message) from error
        stats = {s.name: {stat: per_layer[stat][s.name] for stat in STAT_NAMES} for s in specs}
        return cls(specs, int(header["input_size"]), per_layer["mu"], per_layer["sigma"], per_layer["parents"],
                   per_layer["norm"], stats, header["meta"])


def _paths(path: str | Path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".json", ".npz"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".npz")


def _read_header(json_path: Path) -> dict[str, Any]:
    try:
        header = json.loads(json_path.read_text())
    except FileNotFoundError as error:
        raise GraphFileError(f"no saved graph at {json_path}; mine one and save it first") from error
    except (OSError, ValueError) as error:
        raise GraphFileError(f"{json_path} is not valid JSON ({error}); delete it and re-mine the graph") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise GraphFileError(f"{json_path} is not an explanatory graph file (format {FORMAT!r} expected)")
    if header.get("version") != VERSION:
        raise GraphFileError(f"{json_path} was written by format version {header.get('version')}, this code reads "
                             f"version {VERSION}; re-mine the graph with this version")
    return header
