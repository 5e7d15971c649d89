"""The suite always runs under the package's network guard (`dataplane_no_network` in dataplane.testing),
also when pytest's plugin autoloading is off: no test may send, sniff or resolve."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    manager = config.pluginmanager
    if not manager.has_plugin("dataplane") and not manager.has_plugin("dataplane.testing"):
        manager.import_plugin("dataplane.testing")
