"""Version changes an existing cluster takes, and the ones refused at preview naming the key."""

from __future__ import annotations

import pytest

from vmkube.stack.bootstrap import BootstrapProvider
from vmkube.upgrade import refusal


@pytest.mark.parametrize("running, wanted", [("1.34.4", "1.34.4"), ("1.33.7", "1.34.4"), ("1.34.1", "1.34.4"),
                                             ("", "1.34.4")])
def test_upgrades_one_minor_at_a_time_are_taken(running, wanted):
    assert refusal(running, wanted) is None


@pytest.mark.parametrize("running, wanted, says", [
    ("1.34.4", "1.33.7", "1.34.4 -> 1.33.7 is a downgrade"),
    ("1.34.4", "1.34.3", "1.34.4 -> 1.34.3 is a downgrade"),
    ("1.32.9", "1.34.4", "1.32.9 -> 1.34.4 skips a minor; upgrade one minor at a time: 1.33.x first"),
])
def test_downgrades_and_skipped_minors_are_refused_naming_the_key(running, wanted, says):
    why = refusal(running, wanted)
    assert why.startswith("vmkube:kubernetes.version: ") and says in why


def test_the_bootstrap_refuses_at_check_which_preview_runs_before_anything():
    provider = BootstrapProvider()
    [failure] = provider.check({"version": "1.34.4"}, {"version": "1.33.7"}).failures
    assert failure.property == "version" and "downgrade" in failure.reason
    assert provider.check({}, {"version": "1.34.4"}).failures == []  # a new cluster
    assert provider.check({"version": "1.33.7"}, {"version": "1.34.4"}).failures == []
    assert provider.check({"version": "1.34.4"}, {"version": "1.34.4"}).inputs == {"version": "1.34.4"}
