"""Datasets: the procedural default and the real-data readers, all yielding ``PartSample``s.

Notebooks pick one with ``DATASET=`` (``synthetic`` | ``cub200`` | ``pascal_part`` | ``ilsvrc_part``) and, for the
real ones, ``DATA_ROOT=``; :func:`open_dataset` dispatches.
"""

from .select import open_dataset

__all__ = ["open_dataset"]
