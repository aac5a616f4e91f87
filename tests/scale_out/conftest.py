"""A local Ray instance for the Ray engine's tests: 2 CPUs, a small object store, loopback only.

Started once for the package (Ray takes seconds to start); the engines join it rather than
starting their own. Tests that need it are skipped where Ray is not installed (scripts/setup.sh
installs the ``ray`` extra, so CI runs them).
"""

from __future__ import annotations

import os

import pytest

from tests.inference.conftest import face_photo, make_model_folder  # noqa: F401 - face_photo: a fixture
from tests.inference.test_scan_cli import corpus  # noqa: F401 - a fixture: the local scan tests' corpus


@pytest.fixture(scope="package")
def ray_session():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    os.environ.setdefault("RAY_worker_niceness", "0")  # as the engine starts a local instance
    ray = pytest.importorskip("ray", reason='the Ray engine needs the extra: pip install "gazeclip[ray]"')
    ray.init(
        num_cpus=2,
        object_store_memory=160 << 20,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="package")
def ray_model_dir(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "gazeclip")
