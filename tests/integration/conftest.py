"""pytest fixtures for the integration tests (see tbgw_harness.py).

`gateway_factory(config_overrides)` makes a Gateway on its own temporary
directory (not started); `gw` is a started gateway with the default
configuration. At teardown every gateway still running is stopped with
SIGTERM and must exit 0, and every gateway's log must be clean JSON lines
without sanitizer reports: a test that leaves the daemon broken fails.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tbgw_harness as h  # noqa: E402


def pytest_configure(config):
    assert os.path.isfile(h.TBGW_BIN) and os.access(h.TBGW_BIN, os.X_OK), \
        "tbgw binary not found at %s (set TBGW_BIN)" % h.TBGW_BIN


@pytest.fixture
def gateway_factory():
    made = []

    def make(config=None, start=True, name="gw"):
        g = h.Gateway(config=config, name=name)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    problems = []
    for g in made:
        try:
            if g.running():
                g.stop()
            else:
                g.check_log()
        except AssertionError as e:
            problems.append(str(e))
        finally:
            g.close()
    assert not problems, "\n\n".join(problems)


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory()
