"""The ``threads`` setting binds torch's intra-op pool and numpy's BLAS together."""

import torch
from threadpoolctl import ThreadpoolController, threadpool_info

from metarl.thread_limits import limited_threads, set_threads


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_limited_threads_sets_both_pools_and_restores_them():
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    assert blas_before, "numpy's BLAS should be visible to threadpoolctl"
    with limited_threads(1):
        assert torch.get_num_threads() == 1
        assert blas_threads() == [1] * len(blas_before)
    assert torch.get_num_threads() == torch_before and blas_threads() == blas_before
    with limited_threads(None):  # unchanged
        assert torch.get_num_threads() == torch_before and blas_threads() == blas_before


def test_set_threads_is_process_wide():
    torch_before, blas_before = torch.get_num_threads(), blas_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1 and blas_threads() == [1] * len(blas_before)
    finally:  # restore this process's pools for the other tests
        torch.set_num_threads(torch_before)
        ThreadpoolController().limit(limits=blas_before[0], user_api="blas")
    assert blas_threads() == blas_before
