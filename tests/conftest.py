"""Test-session settings.

The tests use toy networks, which run fastest on one CPU thread. Their caches go to a fresh
folder: a test must train what it uses, never pick up a model a user's run left in ~/.cache.
"""

import os
import shutil
import tempfile

import torch

from poseguard_lib.io import CACHE_ENV

torch.set_num_threads(1)
_TEST_CACHE = tempfile.mkdtemp(prefix="poseguard-test-cache-")
os.environ[CACHE_ENV] = _TEST_CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_TEST_CACHE, ignore_errors=True)
