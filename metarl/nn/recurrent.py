"""Recurrent cores with the ``torch.nn.GRU`` calling convention (``batch_first=True``), and a
network of a core under an output layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNormGRU(nn.Module):
    """A GRU with layer normalisation on its input and recurrent pre-activations.

    Layer normalisation (Ba et al. 2016, Sec. 3.1) is applied separately to ``W x`` and to
    ``U h`` of the gates and of the candidate, so the recurrent dynamics stay well scaled
    over long trials. Duan et al. (2016) used weight normalisation in RL²'s GRU for the same
    purpose. ``update_bias`` is subtracted from the update-gate pre-activation, so a fresh
    network keeps most of its memory at every step (the "forget bias" of LSTMs).
    ``max_timescale`` instead draws each unit's update-gate bias from the chrono
    initialisation (Tallec & Ollivier 2018): unit ``i`` starts with a memory of ``T_i ~
    U[1, max_timescale]`` steps (bias ``-log T_i``), so some units remember a whole trial
    from the first iteration on.

    ``forward(inputs [B, L, F], hidden [1, B, H] | None) -> (outputs [B, L, H], hidden
    [1, B, H])``, as ``nn.GRU(batch_first=True)``.
    """

    def __init__(self, input_size: int, hidden_size: int, update_bias: float = 1.0,
                 max_timescale: int | None = None):
        super().__init__()
        self.input_size, self.hidden_size, self.update_bias = input_size, hidden_size, update_bias
        self.input_proj = nn.Linear(input_size, 3 * hidden_size, bias=False)
        self.hidden_proj = nn.Linear(hidden_size, 3 * hidden_size, bias=False)
        self.input_gate_norm = nn.LayerNorm(2 * hidden_size)
        self.input_cand_norm = nn.LayerNorm(hidden_size)
        self.hidden_gate_norm = nn.LayerNorm(2 * hidden_size)
        self.hidden_cand_norm = nn.LayerNorm(hidden_size)
        nn.init.xavier_uniform_(self.input_proj.weight)
        for chunk in self.hidden_proj.weight.data.chunk(3, dim=0):
            nn.init.orthogonal_(chunk)
        if max_timescale is not None:
            timescales = torch.empty(hidden_size).uniform_(1.0, max(float(max_timescale), 1.0))
            with torch.no_grad():  # the update gate's half of the gate norm's shift
                self.input_gate_norm.bias[:hidden_size] = -torch.log(timescales)
            self.update_bias = 0.0

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = inputs.shape
        size = self.hidden_size
        h = (inputs.new_zeros(batch, size) if hidden is None else hidden[0])
        # Gate and candidate rows of each projection are sliced once, outside the time loop:
        # each matmul then writes a contiguous output for its layer norm, where splitting one
        # [B, 3H] output would copy it for the norm and concatenate its gradient, every step.
        w_x, w_h = self.input_proj.weight, self.hidden_proj.weight
        w_h_gates, w_h_cand = w_h[: 2 * size], w_h[2 * size:]
        # the input projections of every step in one matmul each; unbinding them once keeps
        # the backward pass from zero-filling a full [B, L, 3H] gradient per step
        x_gates = self.input_gate_norm(F.linear(inputs, w_x[: 2 * size])).unbind(1)
        x_cand = self.input_cand_norm(F.linear(inputs, w_x[2 * size:])).unbind(1)
        outputs = []
        for t in range(length):
            gates = x_gates[t] + self.hidden_gate_norm(h @ w_h_gates.T)
            update, reset = gates.chunk(2, dim=-1)
            update = torch.sigmoid(update - self.update_bias)
            candidate = torch.tanh(x_cand[t] + torch.sigmoid(reset)
                                   * self.hidden_cand_norm(h @ w_h_cand.T))
            h = (1.0 - update) * h + update * candidate
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


def make_gru(input_size: int, hidden_size: int, layer_norm: bool = False,
             max_timescale: int | None = None) -> nn.Module:
    """``nn.GRU(batch_first=True)``, or with ``layer_norm`` a :class:`LayerNormGRU`
    (chrono-initialised over ``max_timescale`` steps when given)."""
    if not layer_norm:
        if max_timescale is not None:
            raise ValueError("max_timescale (chrono initialisation) needs layer_norm=True")
        return nn.GRU(input_size, hidden_size, batch_first=True)
    return LayerNormGRU(input_size, hidden_size, max_timescale=max_timescale)


class RecurrentNet(nn.Module):
    """A recurrent ``core`` (``nn.GRU`` convention) under an ``output`` layer applied at every
    step: ``forward(inputs [B, L, F], hidden [1, B, H] | None) -> (outputs [B, L, ...],
    hidden [1, B, H])``."""

    def __init__(self, core: nn.Module, output: nn.Module):
        super().__init__()
        self.core, self.output = core, output
        self.hidden_size: int = core.hidden_size

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        features, hidden = self.core(inputs, hidden)
        return self.output(features), hidden
