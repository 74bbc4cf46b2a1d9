import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Omniglot's minimal background sets for the tests that read them, where the machine has them
# beside the checkout (tests that need them skip otherwise).
_OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"
if _OMNIGLOT.is_dir():
    os.environ.setdefault("METARL_OMNIGLOT_DIR", str(_OMNIGLOT))
# The tests' models are tiny: one intra-op thread is faster, and several threads slow to a
# crawl when other processes (a second test worker, a training job) hold the cores.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance shared by the tests that need one."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()
