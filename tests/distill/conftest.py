import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    """The toy models here are tiny (tests/conftest.py: one_thread)."""
    yield
