"""Fault and bad-input cases run as a user would: the ``metarl`` command in a subprocess, real
signals, real paths. Fast cases run in the default suite; those over ~10 s are marked
``reliability_slow`` and run by ``.ci/run`` (``python -m pytest -q -m reliability_slow``).
Shared helpers: ``as_a_user.py``."""

import pytest
from as_a_user import metarl


@pytest.fixture
def run_metarl():
    return metarl
