"""Fixtures of the real-Ray tests: one two-node cluster per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ray.helpers import TwoNodes, two_node_cluster


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[TwoNodes]:
    """A real 2-node Ray cluster on this machine (``ray.cluster_utils.Cluster``), this
    process connected as its driver; started once for the module, shut down after it."""
    yield from two_node_cluster()


@pytest.fixture
def nodes(ray_cluster: TwoNodes) -> TwoNodes:
    """The module's cluster with both its nodes (a test may have removed the worker node)."""
    ray_cluster.ensure_two_nodes()
    return ray_cluster
