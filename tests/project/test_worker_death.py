"""A worker killed under live kiosks: they continue on the other worker, nothing asked again, nothing lost
(the figures for 50 kiosks: `python benchmarks/worker_death.py`)."""

from __future__ import annotations

import pytest

from tests.support.worker_death import kill_a_worker


@pytest.mark.postgres
@pytest.mark.redis
async def test_kiosks_of_a_killed_worker_continue_their_visits_on_the_other(tmp_path):
    result = await kill_a_worker(6, tmp_path)
    print(result)
    assert result["problems"] == {}, result
    assert 0 < result["cut"] < 6, result  # nginx spread the kiosks; some were on the killed worker
    assert result["resumed"] == result["cut"], result
