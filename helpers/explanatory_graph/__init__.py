"""Explanatory graphs of CNN knowledge (Zhang et al., AAAI 2018 / arXiv 1708.01785): graph object, top-down EM
miner (Algorithm 1), inference, and a slow reference implementation for tests."""

from .graph import Edge, ExplanatoryGraph, GraphFileError, LayerSpec, Node
from .inference import Inference, infer, infer_batch
from .miner import mine_graph
from .params import MinerParams
from .reference import infer_reference, mine_reference
from .source import FeatureSource, as_source, layer_specs, net_features, net_source

__all__ = [
    "Edge", "ExplanatoryGraph", "FeatureSource", "GraphFileError", "Inference", "LayerSpec", "MinerParams", "Node",
    "as_source", "infer", "infer_batch", "infer_reference", "layer_specs", "mine_graph", "mine_reference",
    "net_features", "net_source",
]
