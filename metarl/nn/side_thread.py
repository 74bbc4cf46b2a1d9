"""A second thread for torch work that can run beside the caller's.

Torch ops release the GIL, so with one intra-op thread per caller (``threads=1``) two
Python threads keep two cores busy: e.g. RL²'s value-net update beside the policy's, or
the two halves of a batched forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn


class SideThread:
    """One worker thread; work submitted to it runs in the caller's grad mode (torch's grad
    mode is thread-local, so without this a ``no_grad`` caller's work would build graphs)."""

    def __init__(self, name: str = "metarl-side"):
        self.name = name
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)

    def __reduce__(self):  # a copy (e.g. a policy shipped to a Ray worker) gets its own pool
        return SideThread, (self.name,)

    def submit(self, fn: Callable, *args) -> Future:
        grad = torch.is_grad_enabled()

        def call():
            with torch.set_grad_enabled(grad):
                return fn(*args)

        return self._pool.submit(call)

    def recurrent_forward(self, net: nn.Module, inputs: torch.Tensor,
                          state: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``net(inputs [B, ...], state [1, B, S] | None)`` with the first half of the rows on the
        side thread and the second on the caller's; rows are independent, so the result is
        the whole batch's up to float rounding (a matrix kernel may treat a half-size batch
        differently: bit-equal for RL²'s layer-norm cores from 16 units up here, not at 8)."""
        if inputs.shape[0] < 2:
            return net(inputs, state)
        half = inputs.shape[0] // 2
        first_in, last_in = (None, None) if state is None else (state[:, :half], state[:, half:])
        first = self.submit(net, inputs[:half], first_in)
        outputs, last_state = net(inputs[half:], last_in)
        first_outputs, first_state = first.result()
        return torch.cat([first_outputs, outputs]), torch.cat([first_state, last_state], dim=1)
