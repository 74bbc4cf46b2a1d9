"""Recurrent cores with the ``torch.nn.GRU`` calling convention (``batch_first=True``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metarl.nn.mlp import activation_by_name


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

    ``candidate_activation="relu"`` makes the candidate state a ReLU (as the GRU and LSTM of
    lucaslingle/pytorch_rl2) instead of tanh.

    ``forward(inputs [B, L, F], hidden [1, B, H] | None) -> (outputs [B, L, H], hidden
    [1, B, H])``, as ``nn.GRU(batch_first=True)``.
    """

    def __init__(self, input_size: int, hidden_size: int, update_bias: float = 1.0,
                 max_timescale: int | None = None, candidate_activation: str = "tanh"):
        super().__init__()
        self.input_size, self.hidden_size, self.update_bias = input_size, hidden_size, update_bias
        self.state_size = hidden_size
        self.activation = activation_by_name(candidate_activation)[0]()
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
            candidate = self.activation(x_cand[t] + torch.sigmoid(reset)
                                        * self.hidden_cand_norm(h @ w_h_cand.T))
            h = (1.0 - update) * h + update * candidate
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)


class LayerNormLSTM(nn.Module):
    """An LSTM with layer normalisation (Ba et al. 2016, Sec. 3.1) on its input and recurrent
    pre-activations and on the cell before the output gate: ``h = o * tanh(LN(c))``.

    ``forget_bias`` is added to the forget-gate pre-activation. The cell can sum what it
    writes (a GRU state is a running average), e.g. counts and reward totals; with
    ``candidate_activation="relu"`` the written values are ReLUs, as in lucaslingle/pytorch_rl2's
    LSTM (which reads out ``o * LN(c)``, without the tanh).

    The state ``(h, c)`` travels as one tensor ``[1, B, 2H]`` (``state_size = 2H``), so the
    calling convention is ``nn.GRU``'s: ``forward(inputs [B, L, F], state [1, B, 2H] | None)
    -> (outputs h [B, L, H], state [1, B, 2H])``.
    """

    def __init__(self, input_size: int, hidden_size: int, forget_bias: float = 1.0,
                 candidate_activation: str = "tanh"):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.state_size, self.forget_bias = 2 * hidden_size, forget_bias
        self.activation = activation_by_name(candidate_activation)[0]()
        self.input_proj = nn.Linear(input_size, 4 * hidden_size, bias=False)
        self.hidden_proj = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        self.input_norm = nn.LayerNorm(4 * hidden_size)
        self.hidden_norm = nn.LayerNorm(4 * hidden_size)
        self.cell_norm = nn.LayerNorm(hidden_size)
        nn.init.xavier_uniform_(self.input_proj.weight)
        for chunk in self.hidden_proj.weight.data.chunk(4, dim=0):
            nn.init.orthogonal_(chunk)

    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, length, _ = inputs.shape
        size = self.hidden_size
        if state is None:
            state = inputs.new_zeros(1, batch, 2 * size)
        h, c = state[0, :, :size], state[0, :, size:]
        # every step's input projection in one matmul, unbound once (see LayerNormGRU)
        x = self.input_norm(self.input_proj(inputs)).unbind(1)
        w_h = self.hidden_proj.weight
        outputs = []
        for t in range(length):
            forget, write, out, candidate = (x[t] + self.hidden_norm(h @ w_h.T)).chunk(4, dim=-1)
            c = (torch.sigmoid(forget + self.forget_bias) * c
                 + torch.sigmoid(write) * self.activation(candidate))
            h = torch.sigmoid(out) * torch.tanh(self.cell_norm(c))
            outputs.append(h)
        return torch.stack(outputs, dim=1), torch.cat([h, c], dim=-1).unsqueeze(0)
