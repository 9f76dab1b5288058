"""PARENT_SCALE (CBO-U) and its baselines: the expert whose demonstrations acbo learns from."""

from engine.expert.types import Trajectory

__all__ = ["Trajectory"]
