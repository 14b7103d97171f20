"""Unit-test settings: hypothesis example counts (fewer on CI), no example database on disk."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("unit", max_examples=200, deadline=None, database=None)
settings.register_profile("unit-ci", max_examples=50, deadline=None, database=None)
settings.load_profile("unit-ci" if os.environ.get("CI") else "unit")
