"""Shared pytest configuration."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Register project markers."""
    config.addinivalue_line("markers", "node: needs Node.js and web/node_modules (run `cd web && npm ci`)")
