"""Sampling-based model-predictive control: random shooting, CEM and MPPI (GrBAL / ReBAL).

Every planner scores ``candidates`` action sequences of ``horizon`` steps for each of ``B``
environments at once: the candidates form one tensor ``actions [B, C, H, a]`` and one call of
a *scorer* ``score(actions) -> returns [B, C]`` evaluates all of them. There is no Python
loop over environments or candidates: the loops are over the ``H`` steps of the model
rollout (:func:`model_returns`), over a planner's iterations, and, on the CPU, over
cache-sized blocks of ~1000 rows of candidates (all environments at once: a (256, 256)
MLP's activations then stay in the cache, 1.5x faster than one block of 20 x 1000 rows).
A planner returns the first action of the sequence it chose for each environment;
replanning at every control step is the caller's loop::

    gens = per_env_generators(rng.seeds())            # one stream per environment
    score = make_score(model_step, env_reward, obs)   # obs [B, d]
    action, info = planner.plan(score, B, low, high, gens, state=state)
    state = info["state"]                             # warm start (CEM / MPPI), optional

Shapes: ``B`` environments, ``C`` candidates, ``H`` horizon, ``d`` observation size, ``a``
action size. ``low`` / ``high`` ``[a]`` are the action box; the planners sample, compute and
return on their device and in their dtype (float32 is the fast path).

The scorer: :func:`model_returns` rolls a learned dynamics model out from the current
observations, ``step(obs [B, C, d], act [B, C, a], carry) -> (next_obs [B, C, d], carry)``
(``carry`` is ``None`` for a feed-forward model, the hidden state of a recurrent one), and
sums the env's known reward ``reward(obs, act, next_obs) -> [B, C]`` with ``discount``. NaN
returns (a diverging model) count as ``-inf``, so such a candidate is never chosen and gets
no weight; ``+inf`` counts as the largest finite float. A recurrent model's carry after the
*real* transition (ReBAL's hidden state) is the caller's to update, as in the reference's
``RNNMPCController.get_actions``.

Randomness: ``generator`` is either one ``torch.Generator`` for the whole batch (then
environment ``b``'s samples, hence its plan, depend on the batch's size and order), or a
sequence of ``B`` generators, one per environment (``per_env_generators``): each
environment's candidates are then drawn from its own generator alone, so its plan does not
depend on which other environments share the batch (up to the last bits of float32 matmuls,
whose blocking can depend on the row count). The per-environment draws cost nothing
measurable: ``B`` calls instead of one for the same numbers (20 x 60,000 uniforms: ~6 ms
either way, against ~370 ms for the plan of ``metarl bench mpc``).

The planners follow learning_to_adapt's ``MPCController`` (GrBAL / ReBAL, Nagabandi et al.
2019) where it defines them, with these differences, all on purpose:

* CEM's sampling distribution starts at the centre of the action box with a standard
  deviation of half its width: the reference's mean 0 and std 1 for the usual ``[-1, 1]``
  box, and inside the box for any other.
* CEM's elites are the ``max(int(C * elite_fraction), 1)`` candidates of highest return for
  each environment. The reference's ``argsort(-returns) < num_elites`` marks the positions
  where the *first* ``num_elites`` candidates are ranked, not the best ones, pools the elites
  of all environments into one shared mean, evaluates the unclipped samples, and pairs the
  candidates of one environment with the observations of another when it plans for several
  at once; none of that is reproduced.
* As the reference: samples are clipped to the box, the mean is smoothed
  ``mean = smoothing * mean + (1 - smoothing) * elite_mean`` (``alpha = 0.1``), the std is
  the elites' (population) std, unsmoothed, and CEM returns the first action of the *best
  candidate of the last iteration*, not the mean (PETS returns the mean). (The reference's
  ``RNNMPCController`` sets ``mean = elite_mean``, i.e. ``smoothing=0``, with 5% elites.)
* Random shooting draws uniformly in ``[low, high)``, as the reference.
* MPPI (Williams et al. 2017, "Information theoretic MPC for model-based RL"; not in the
  reference) averages the *clipped* samples with weights ``softmax(returns / temperature)``
  (Williams et al. add the weighted unclipped noise to the mean; averaging the clipped
  samples keeps the mean inside the box) and returns the first action of the updated mean.
* CEM and MPPI return a warm-start state ``info["state"]`` ``[B, H, a]``, the final mean
  shifted by one step with the box centre appended; passing it to the next ``plan`` starts
  the sampling distribution's mean there (``None``: cold start). The reference has no warm
  start (``state=None`` reproduces it). To cold-start some environments (after a reset), set
  their rows of the state to ``(low + high) / 2``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: ``None``, a tensor ``[B, ...]`` or a (nested) tuple / list of them
Carry = Any
#: the dynamics model: ``(obs [B, C, d], act [B, C, a], carry) -> (next_obs [B, C, d], carry)``
Step = Callable[[Tensor, Tensor, Carry], tuple[Tensor, Carry]]
#: the env's reward: ``(obs [B, C, d], act [B, C, a], next_obs [B, C, d]) -> [B, C]``
Reward = Callable[[Tensor, Tensor, Tensor], Tensor]
#: ``actions [B, C, H, a] -> returns [B, C]``
Score = Callable[[Tensor], Tensor]
#: one generator for the batch, one per environment, or ``None`` (torch's default)
Generators = torch.Generator | Sequence[torch.Generator] | None


# ------------------------------------------------------------------------------- scoring
def expand_carry(carry: Carry, candidates: int) -> Carry:
    """Each tensor of ``carry`` (leading dimension ``B``) broadcast to ``[B, C, ...]``
    without copying; ``None`` stays ``None``, tuples and lists keep their structure."""
    if carry is None:
        return None
    if isinstance(carry, Tensor):
        return carry.unsqueeze(1).expand(carry.shape[0], candidates, *carry.shape[1:])
    if isinstance(carry, (tuple, list)):
        return type(carry)(expand_carry(c, candidates) for c in carry)
    raise TypeError(f"carry must be None, a tensor or a tuple/list of them, not "
                    f"{type(carry).__name__}")


#: rows (environments x candidates) per block of :func:`model_returns` on the CPU: a
#: (256, 256) MLP's activations of 1000 rows (1 MB a layer) stay in the cache; 20 x 1000
#: candidates x 10 steps (``metarl bench mpc``, one thread): 0.37 s a plan in blocks of
#: 1020 rows, 0.57 s in one block of 20,000
CPU_BLOCK_ROWS = 1024


def model_returns(step: Step, reward: Reward, obs0: Tensor, actions: Tensor,
                  carry: Carry = None, discount: float = 1.0,
                  block_rows: int | None = None) -> Tensor:
    """The model's returns ``[B, C]`` of ``actions [B, C, H, a]`` from ``obs0 [B, d]``:
    ``sum_t discount**t * reward(obs_t, act_t, obs_{t+1})`` along the rollout of ``step``.

    ``obs0`` is broadcast to ``[B, C, d]`` (a view, no copy), and so is each tensor of
    ``carry`` (leading dimension ``B``, see :func:`expand_carry`); ``step`` receives the
    carry in that ``[B, C, ...]`` form and returns it so.

    The rollout runs over blocks of candidates, ``[B, c, ...]`` with ``B * c`` about
    ``block_rows`` rows, each block all ``H`` steps, so that a large model's activations stay
    in the cache (the same numbers up to float rounding; see :data:`CPU_BLOCK_ROWS`).
    ``None``: :data:`CPU_BLOCK_ROWS` on the CPU, one block on other devices; ``0``: one
    block. Call under ``torch.no_grad()`` (the planners do)."""
    if actions.ndim != 4:
        raise ValueError(f"actions must be [B, C, H, a], got shape {tuple(actions.shape)}")
    batch, candidates, _, _ = actions.shape
    if obs0.ndim != 2 or obs0.shape[0] != batch:
        raise ValueError(f"obs0 must be [B={batch}, d], got shape {tuple(obs0.shape)}")
    if block_rows is None:
        block_rows = CPU_BLOCK_ROWS if actions.device.type == "cpu" else 0
    block = candidates if block_rows <= 0 else max(1, min(candidates, block_rows // batch))
    if block >= candidates:
        return _rollout(step, reward, obs0, actions, carry, discount)
    returns = None
    for start in range(0, candidates, block):
        part = _rollout(step, reward, obs0, actions[:, start:start + block], carry, discount)
        if returns is None:
            returns = part.new_empty(batch, candidates)
        returns[:, start:start + block] = part
    return returns


def _rollout(step: Step, reward: Reward, obs0: Tensor, actions: Tensor, carry: Carry,
             discount: float) -> Tensor:
    """:func:`model_returns` in one block."""
    batch, candidates, horizon, _ = actions.shape
    obs = obs0.unsqueeze(1).expand(batch, candidates, obs0.shape[1])
    carry = expand_carry(carry, candidates)
    returns = None
    weight = 1.0
    for t in range(horizon):
        act = actions[:, :, t]
        next_obs, carry = step(obs, act, carry)
        rewards = reward(obs, act, next_obs)
        if rewards.shape != (batch, candidates):
            raise ValueError(f"reward must return [B, C] = [{batch}, {candidates}], got "
                             f"shape {tuple(rewards.shape)}")
        if returns is None:
            returns = rewards.mul(weight) if weight != 1.0 else rewards.clone()
        else:
            returns.add_(rewards, alpha=weight)
        weight *= discount
        obs = next_obs
    return returns


def make_score(step: Step, reward: Reward, obs0: Tensor, carry: Carry = None,
               discount: float = 1.0, block_rows: int | None = None) -> Score:
    """The scorer ``actions [B, C, H, a] -> returns [B, C]`` of :func:`model_returns` from
    ``obs0 [B, d]``."""
    return functools.partial(model_returns, step, reward, obs0, carry=carry, discount=discount,
                             block_rows=block_rows)


# ------------------------------------------------------------------------------ sampling
def per_env_generators(seeds: Sequence[int] | np.ndarray,
                       device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per environment, seeded with ``seeds`` (e.g. a
    :class:`metarl.random.BatchRNG`'s ``seeds()``, drawn per trial or per step)."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def _draw(normal: bool, shape: tuple[int, ...], generator: Generators, like: Tensor
          ) -> Tensor:
    """Standard normal or ``U[0, 1)`` samples of ``shape`` (first dimension ``B``) on
    ``like``'s device and dtype, from one generator or one per environment."""
    if generator is None or isinstance(generator, torch.Generator):
        draw = torch.randn if normal else torch.rand
        return draw(shape, generator=generator, device=like.device, dtype=like.dtype)
    generators = list(generator)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    out = torch.empty(shape, device=like.device, dtype=like.dtype)
    for row, gen in zip(out, generators, strict=True):
        if normal:
            row.normal_(generator=gen)
        else:
            row.uniform_(generator=gen)
    return out


def _bounds(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    low = torch.as_tensor(low)
    high = torch.as_tensor(high, device=low.device)
    if low.ndim != 1 or low.shape != high.shape:
        raise ValueError(f"low and high must both be [a], got {tuple(low.shape)} and "
                         f"{tuple(high.shape)}")
    if not torch.is_floating_point(low):
        low = low.float()
    high = high.to(low.dtype)
    if bool((low > high).any()):
        raise ValueError("low must be <= high")
    return low, high


def _returns_of(score: Score, actions: Tensor) -> Tensor:
    """``score(actions)`` checked to be ``[B, C]``, NaN replaced by ``-inf``."""
    returns = score(actions)
    if returns.shape != actions.shape[:2]:
        raise ValueError(f"score must return [B, C] = {list(actions.shape[:2])}, got shape "
                         f"{tuple(returns.shape)}")
    return torch.nan_to_num(returns, nan=float("-inf"), neginf=float("-inf"))


def _sample_around(score: Score, shape: tuple[int, ...], mean: Tensor, scale: Tensor,
                   low: Tensor, high: Tensor, generator: Generators) -> tuple[Tensor, Tensor]:
    """Candidates ``mean + scale * N(0, 1)`` of ``shape`` ``[B, C, H, a]`` clipped to the box
    (``mean [B, H, a]``; ``scale`` broadcasts against the candidates) and their returns."""
    actions = _draw(True, shape, generator, low)
    actions.mul_(scale).add_(mean.unsqueeze(1))
    actions = torch.clamp(actions, low, high, out=actions)
    return actions, _returns_of(score, actions)


def _pick(actions: Tensor, returns: Tensor) -> Tensor:
    """Each environment's candidate of highest return: ``[B, H, a]``."""
    best = returns.argmax(dim=1)
    return actions[torch.arange(actions.shape[0], device=actions.device), best]


def _shifted(mean: Tensor, centre: Tensor) -> Tensor:
    """The warm-start state: ``mean [B, H, a]`` one step on, the box centre appended."""
    return torch.cat([mean[:, 1:], centre.expand(mean.shape[0], 1, -1)], dim=1)


# ------------------------------------------------------------------------------ planners
class Planner:
    """A sampling-based planner over ``candidates`` sequences of ``horizon`` actions."""

    def __init__(self, candidates: int, horizon: int):
        if candidates < 1 or horizon < 1:
            raise ValueError(f"candidates and horizon must be >= 1, got {candidates} and "
                             f"{horizon}")
        self.candidates, self.horizon = int(candidates), int(horizon)

    @property
    def evaluations(self) -> int:
        """Candidate sequences scored per ``plan`` call and environment."""
        return self.candidates

    def plan(self, score: Score, batch: int, low: Tensor, high: Tensor,
             generator: Generators = None, state: Tensor | None = None
             ) -> tuple[Tensor, dict[str, Tensor | None]]:
        """``(first_actions [B, a], info)`` for ``batch`` environments in the box ``[low,
        high]`` (``[a]`` each; the results are on their device and in their dtype).

        ``info``: ``"plan"`` ``[B, H, a]``, the chosen sequence (its first step is the
        action); ``"returns"`` ``[B, C]``, the scores of the last candidates drawn;
        ``"state"`` ``[B, H, a]`` or ``None``, the warm start for the next call (pass it as
        ``state``). Runs under ``torch.no_grad()``."""
        low, high = _bounds(low, high)
        if state is not None and state.shape != (batch, self.horizon, low.shape[0]):
            raise ValueError(f"state must be [B, H, a] = [{batch}, {self.horizon}, "
                             f"{low.shape[0]}], got {tuple(state.shape)}")
        with torch.no_grad():
            plan, info = self._plan(score, batch, low, high, generator, state)
        return plan[:, 0], {"plan": plan, **info}

    def _plan(self, score, batch, low, high, generator, state):
        raise NotImplementedError

    def _shape(self, batch: int, low: Tensor) -> tuple[int, int, int, int]:
        return batch, self.candidates, self.horizon, low.shape[0]


class RandomShooting(Planner):
    """Random shooting: ``candidates`` sequences drawn uniformly in the box, the first action
    of the one of highest return (the reference's ``get_rs_action``)."""

    def _plan(self, score, batch, low, high, generator, state):
        actions = _draw(False, self._shape(batch, low), generator, low)
        actions.mul_(high - low).add_(low)
        returns = _returns_of(score, actions)
        return _pick(actions, returns), {"returns": returns, "state": None}


class CEM(Planner):
    """The cross-entropy method (the reference's ``get_cem_action``, see the module docstring
    for the differences): ``iterations`` rounds of ``candidates`` samples from a diagonal
    Gaussian over the sequence, clipped to the box; each round moves the mean to
    ``smoothing * mean + (1 - smoothing) * elite_mean`` and sets the std to the elites'; the
    result is the best candidate of the last round. ``state`` (optional) is a warm-start
    mean ``[B, H, a]``; the std always starts at half the box."""

    def __init__(self, candidates: int, horizon: int, iterations: int = 5,
                 elite_fraction: float = 0.1, smoothing: float = 0.1):
        super().__init__(candidates, horizon)
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not 0.0 < elite_fraction <= 1.0:
            raise ValueError(f"elite_fraction must be in (0, 1], got {elite_fraction}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.iterations, self.smoothing = int(iterations), float(smoothing)
        self.elites = max(int(candidates * elite_fraction), 1)

    @property
    def evaluations(self) -> int:
        return self.candidates * self.iterations

    def _plan(self, score, batch, low, high, generator, state):
        shape = self._shape(batch, low)
        centre = (low + high) / 2
        mean = centre.expand(batch, self.horizon, -1) if state is None else state
        std = ((high - low) / 2).expand(batch, self.horizon, -1)
        for _ in range(self.iterations):
            actions, returns = _sample_around(score, shape, mean, std.unsqueeze(1), low, high,
                                              generator)
            index = returns.topk(self.elites, dim=1, sorted=False).indices
            elites = actions.gather(1, index[:, :, None, None].expand(-1, -1, *shape[2:]))
            std, elite_mean = torch.std_mean(elites, dim=1, correction=0)
            mean = self.smoothing * mean + (1.0 - self.smoothing) * elite_mean
        return _pick(actions, returns), {"returns": returns, "state": _shifted(mean, centre)}


class MPPI(Planner):
    """Model-predictive path integral control (Williams et al. 2017): ``iterations`` rounds
    of ``candidates`` samples ``mean + noise_std * N(0, 1)`` clipped to the box; each round
    sets the mean to the samples' average weighted by ``softmax(returns / temperature)``;
    the result is the final mean. ``noise_std``: a float or ``[a]``, in action units.
    ``state`` (optional) is a warm-start mean ``[B, H, a]`` (``info["state"]`` of the
    previous call)."""

    def __init__(self, candidates: int, horizon: int, iterations: int = 1,
                 temperature: float = 1.0, noise_std: float | Tensor = 0.5):
        super().__init__(candidates, horizon)
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if not temperature > 0.0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not bool((torch.as_tensor(noise_std) > 0).all()):
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        self.iterations, self.temperature = int(iterations), float(temperature)
        self.noise_std = noise_std

    @property
    def evaluations(self) -> int:
        return self.candidates * self.iterations

    def _plan(self, score, batch, low, high, generator, state):
        shape = self._shape(batch, low)
        centre = (low + high) / 2
        mean = centre.expand(batch, self.horizon, -1) if state is None else state
        noise_std = torch.as_tensor(self.noise_std, dtype=low.dtype, device=low.device)
        for _ in range(self.iterations):
            actions, returns = _sample_around(score, shape, mean, noise_std, low, high,
                                              generator)
            weights = torch.softmax(returns / self.temperature, dim=1)  # [B, C]
            if bool(torch.isnan(weights).any()):  # every return -inf: the plain average
                weights = torch.where(torch.isnan(weights), 1.0 / shape[1], weights)
            mean = torch.bmm(weights.unsqueeze(1), actions.flatten(2)).view(batch,
                                                                            *shape[2:])
        return mean, {"returns": returns, "state": _shifted(mean, centre)}
