import pytest
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import Clock, FakeSystemd, make_app


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path)


@pytest.fixture
def systemd(app):
    return FakeSystemd(app)


@pytest.fixture
def clock():
    return Clock()
