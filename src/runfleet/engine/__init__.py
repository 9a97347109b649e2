"""The hyper-parallel execution engine: search spaces, chunk scheduling, workers."""

from runfleet.engine.experiment import Experiment
from runfleet.engine.ray_executor import RayExecutor
from runfleet.engine.space import GridSearch, List, RandomSearch, Range

__all__ = ["Experiment", "GridSearch", "List", "RandomSearch", "Range", "RayExecutor"]
