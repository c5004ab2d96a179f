"""The test process runs under gevent, like the daemon: the probe's deadline relies on it."""

from gevent import monkey

monkey.patch_all()

import ssl  # noqa: E402

import pytest  # noqa: E402
import trustme  # noqa: E402

from tests.servers import TestServers  # noqa: E402


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """Trusts only the test CA, as a daemon started with --ca-file would."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def servers(ca: trustme.CA):
    """Real HTTP/HTTPS servers on 127.0.0.1, stopped after the test."""
    pool = TestServers(ca)
    try:
        yield pool
    finally:
        pool.stop_all()
