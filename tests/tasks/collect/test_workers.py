"""Sharing the downloads among workers: round-robin groups, politeness limits divided."""

from __future__ import annotations

import pytest

from tv100.tasks.collect.config import DownloadConfig
from tv100.tasks.collect.workers import per_worker_config, shard_groups
from tv100.tasks.web.config import HttpConfig
from tv100.tasks.web.politeness import DEFAULT_RATE_PER_HOST


def test_shard_groups_deal_round_robin():
    hits = [{"image_id": str(i)} for i in range(7)]
    groups = shard_groups(hits, 2, 3)
    assert [[[h["image_id"] for h in s] for s in g] for g in groups] == [
        [["0", "1"], ["6"]],
        [["2", "3"]],
        [["4", "5"]],
    ]
    assert len(shard_groups(hits, 4, 5)) == 2  # no empty groups
    assert shard_groups([], 4, 2) == []


def test_per_worker_config_divides_the_limits():
    config = DownloadConfig(
        processes=4,
        in_flight=32,
        http=HttpConfig(per_host=4, max_connections=32, rate_per_host=2.0),
    )
    each = per_worker_config(config, 4)
    assert (each.processes, each.in_flight) == (1, 8)
    assert (each.http.per_host, each.http.max_connections, each.http.rate_per_host) == (
        1,
        8,
        0.5,
    )
    # No rate named: the default per-host rate is the run's, so the 3 workers share it too.
    lone = per_worker_config(DownloadConfig(in_flight=1), 3)
    assert (lone.in_flight, lone.http.per_host) == (1, 1)
    assert lone.http.rate_per_host == pytest.approx(DEFAULT_RATE_PER_HOST / 3)
