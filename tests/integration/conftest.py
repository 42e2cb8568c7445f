"""pytest fixtures for the integration tests (see tbgw_harness.py).

`gateway_factory(config_overrides)` makes a Gateway on its own temporary
directory (not started); `gw` is a started gateway with the default
configuration. `partners` starts the three demo mock partners (laizhou and
zhaoyuan: lu-xml; wujiang: yue-json; mock_partners.py) on free ports;
`delivery_gateway(delivery=..., per_partner=..., config=...)` makes a started
gateway whose partners point at them, with short delivery timeouts. At teardown every gateway still running is stopped with
SIGTERM and must exit 0, and every gateway's log must be clean JSON lines
without sanitizer reports: a test that leaves the daemon broken fails.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tbgw_harness as h  # noqa: E402
import mock_partners as mp  # noqa: E402


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


@pytest.fixture
def partners():
    """The three demo mock partners, started on free ports (mock_partners.py).
    Their --gateway-url is the partner listener port delivery_gateway
    configures (partners.partner_port)."""
    ps = mp.start_partners()
    yield ps
    ps.close()


@pytest.fixture
def delivery_gateway(partners, gateway_factory):
    """make(delivery=None, per_partner=None, config=None, start=True): a
    gateway whose partners are the mocks of `partners`. Torn down before the
    mocks (fixture order), so that its SIGTERM finds the partners up."""

    def make(delivery=None, per_partner=None, config=None, start=True, name="dlv"):
        cfg = h.merge(partners.config(delivery, per_partner), config or {})
        return gateway_factory(cfg, start=start, name=name)

    return make
