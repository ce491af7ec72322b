import os

# Idle OpenMP threads must sleep, not spin: the suite starts worker and DDP processes beside this
# one on 2 cores, and spinning threads made tiny training steps 100x slower there. Set before
# torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402


def _test_threads() -> int:
    """Up to 2 threads, shared among pytest-xdist's worker processes (``make test`` runs 2 on CI's
    2 cores: one thread each); RTSEG_TEST_THREADS=1 helps on a crowded machine."""
    if "RTSEG_TEST_THREADS" in os.environ:
        return int(os.environ["RTSEG_TEST_THREADS"])
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


torch.set_num_threads(_test_threads())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def official_evaluator(monkeypatch):
    """cityscapesscripts' evalPixelLevelSemanticLabeling, the reference our scores are tested against.

    Its 2.3.0 release still calls ``np.in1d``, which numpy 2.4 removed (upstream PR #196 is
    open); the documented equivalent is put back for the test only.
    """
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as module

    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False, **kw: np.isin(a, b, invert=invert, **kw).ravel(),
                            raising=False)
    return module


@pytest.fixture(scope="module", autouse=True)
def _single_thread_for_tiny_models(request):
    """A module that sets ``SINGLE_THREAD = True`` runs on one thread: its models are so small
    that a second thread only adds synchronisation, and one thread is immune to a shared CPU."""
    if not getattr(request.module, "SINGLE_THREAD", False):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
