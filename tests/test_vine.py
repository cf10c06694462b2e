"""Vine sampling: common random numbers, Q estimates against exact values on a small MDP, the
objective's gradient against the exact policy gradient, and the objective's invariances."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo_exp.config import EnvConfig, VineConfig
from trpo_exp.envs.factory import make_eval_env
from trpo_exp.envs.snapshot import register_family, snapshot
from trpo_exp.nets import CategoricalPolicy, GaussianPolicy, ValueNet, make_policy
from trpo_exp.obs_norm import RunningObsNormalizer
from trpo_exp.optim.flat import flat_grad
from trpo_exp.rollout.vine import RolloutState, VineBatch, VineBrancher, choose_rollout_states

# --- a tiny MDP with known action values ---------------------------------------------------

N_STATES, GOAL, P_MOVE, STEP_COST, GAMMA = 5, 4, 0.75, -0.05, 0.9


class ChainEnv(gym.Env):
    """States 0..4 in a row (one-hot observations). Action 1 moves right with probability 0.75
    (else stays), action 0 moves left. Reaching state 4 pays +1 and terminates; every other step
    costs 0.05. The randomness comes from the env's np_random, so snapshots must restore it."""

    observation_space = gym.spaces.Box(0.0, 1.0, (N_STATES,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def _obs(self):
        obs = np.zeros(N_STATES, np.float32)
        obs[self.pos] = 1.0
        return obs

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        if int(action) == 1:
            self.pos += int(self.np_random.random() < P_MOVE)
        else:
            self.pos = max(0, self.pos - 1)
        terminated = self.pos == GOAL
        return self._obs(), 1.0 if terminated else STEP_COST, terminated, False, {}


gym.register("VineTestChain-v0", entry_point=ChainEnv, max_episode_steps=10_000)
register_family(ChainEnv, save=lambda env: {"pos": env.pos},
                load=lambda env, state: (setattr(env, "pos", state["pos"]), env._obs())[1])


def transitions(s, a):
    """[(probability, next state)] of the chain."""
    if a == 1:
        return [(P_MOVE, s + 1), (1 - P_MOVE, s)]
    return [(1.0, max(0, s - 1))]


def exact_q(policy: CategoricalPolicy) -> np.ndarray:
    """Q^pi(s, a) for s < GOAL by solving the Bellman equations (GOAL is terminal, V = 0)."""
    with torch.no_grad():
        pi = policy.distribution(torch.eye(N_STATES)).probs.double().numpy()
    p_pi, r_pi = np.zeros((GOAL, GOAL)), np.zeros(GOAL)
    for s in range(GOAL):
        for a in range(2):
            for p, s2 in transitions(s, a):
                r_pi[s] += pi[s, a] * p * (1.0 if s2 == GOAL else STEP_COST)
                if s2 != GOAL:
                    p_pi[s, s2] += pi[s, a] * p
    v = np.linalg.solve(np.eye(GOAL) - GAMMA * p_pi, r_pi)
    q = np.zeros((GOAL, 2))
    for s in range(GOAL):
        for a in range(2):
            q[s, a] = sum(p * ((1.0 if s2 == GOAL else STEP_COST) + (0.0 if s2 == GOAL else GAMMA * v[s2]))
                          for p, s2 in transitions(s, a))
    return q


def trunk_states(env_id: str, policy, count: int, seed: int = 0):
    """Snapshots of ``count`` consecutive states visited by the policy (one env, resets included)."""
    env = make_eval_env(EnvConfig(id=env_id))  # made as the project makes its envs (same wrappers)
    normalizer = RunningObsNormalizer(env.observation_space.shape, 10.0, enabled=False)
    obs, _ = env.reset(seed=seed)
    states = []
    for _ in range(count):
        states.append(RolloutState(snapshot(env), normalizer(obs)))
        with torch.no_grad():
            action = policy.sample(torch.as_tensor(normalizer(obs))[None])[0].numpy()
        if isinstance(env.action_space, gym.spaces.Box):
            action = np.clip(action, env.action_space.low, env.action_space.high)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return states, normalizer


def brancher_for(env_id, normalizer, **vine):
    return VineBrancher(EnvConfig(id=env_id), VineConfig(**vine), GAMMA, normalizer, torch.device("cpu"))


def test_vine_q_estimates_match_exact_action_values_and_gradient_points_the_right_way():
    torch.manual_seed(0)
    policy = CategoricalPolicy(N_STATES, 2, [8], "tanh")
    with torch.no_grad():  # a policy that is neither uniform nor greedy
        policy.logits_net[-1].bias.copy_(torch.tensor([0.0, 0.8]))
    states, normalizer = trunk_states("VineTestChain-v0", policy, 1500)
    brancher = brancher_for("VineTestChain-v0", normalizer, num_actions=2, rollout_len=200, branch_batch=512,
                            value_targets="branches")
    value_net = ValueNet(N_STATES, [8], "tanh")
    with torch.no_grad():  # gamma^200 makes the bootstrap negligible; zero it to be exact
        for p in value_net.parameters():
            p.zero_()
    result = brancher.branch(policy, value_net, states)
    batch, steps = result.batch, result.steps
    assert batch.enumerated and batch.q.shape == (1500, 2) and steps > 1500 * 2
    positions = batch.states.argmax(dim=1).numpy()
    q_true = exact_q(policy)
    for s in range(GOAL):
        rows = positions == s
        assert rows.sum() > 50
        estimate = batch.q[torch.as_tensor(rows)].double().mean(dim=0).numpy()
        np.testing.assert_allclose(estimate, q_true[s], atol=0.06)

    # The vine objective's gradient against the exact one over the same states.
    params = list(policy.parameters())
    g_vine = flat_grad(batch.surrogate(policy), params)
    q_exact_rows = torch.as_tensor(q_true[positions], dtype=torch.float32)
    exact_objective = (policy.distribution(batch.states).probs * q_exact_rows).sum(dim=1).mean()
    g_exact = flat_grad(exact_objective, params)
    cosine = torch.dot(g_vine, g_exact) / (g_vine.norm() * g_exact.norm())
    assert cosine > 0.95, float(cosine)

    # The value samples: the rollout states' E_{a~pi_old} Q (first 1500), then every state inside a
    # branch with its return to the branch's end; both estimate V^pi of their state.
    with torch.no_grad():
        pi = policy.distribution(torch.eye(N_STATES)).probs.double().numpy()
    v_true = (pi[:GOAL] * q_true).sum(axis=1)
    v_positions = result.value_obs.argmax(dim=1).numpy()
    for part in (slice(0, 1500), slice(1500, None)):
        for s in range(GOAL):
            rows = v_positions[part] == s
            assert rows.sum() > 50
            estimate = result.value_targets[part][torch.as_tensor(rows)].double().mean().item()
            assert estimate == pytest.approx(v_true[s], abs=0.06)
    brancher.close()


def test_branches_with_the_same_action_share_random_numbers():
    torch.manual_seed(1)
    env = gym.make("Hopper-v5")
    policy = make_policy(env.observation_space, env.action_space, [16], "tanh", 0.0)
    states, normalizer = trunk_states("Hopper-v5", policy, 12)
    brancher = brancher_for("Hopper-v5", normalizer, num_actions=3, rollout_len=30)
    value_net = ValueNet(11, [16], "tanh")
    a = torch.full((3,), 0.3)
    b = torch.full((3,), -0.9)
    actions = torch.stack([a, a, b]).expand(len(states), 3, 3).contiguous()
    stats_before = normalizer.state_dict()
    q, steps = brancher.estimate_q(policy, value_net, states, actions)
    assert steps > 0
    assert torch.equal(q[:, 0], q[:, 1])  # same state, action and random numbers: same return
    assert not torch.equal(q[:, 0], q[:, 2])  # the first action matters
    after = normalizer.state_dict()
    assert np.array_equal(after["mean"], stats_before["mean"]) and after["count"] == stats_before["count"]
    brancher.close()


def test_self_normalised_objective_ignores_a_constant_shift_of_q():
    torch.manual_seed(2)
    policy = GaussianPolicy(3, 2, [8], "tanh", -0.5)
    obs = torch.randn(6, 3)
    with torch.no_grad():
        dist = policy.distribution(obs)
        actions = dist.sample((4,)).transpose(0, 1)
        log_q = dist.log_prob(actions.transpose(0, 1)).T
    q = torch.randn(6, 4)
    params = list(policy.parameters())
    grads = [flat_grad(VineBatch(obs, actions, q + c, log_q, False).surrogate(policy), params) for c in (0.0, 100.0)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)
    # Equal action values: nothing to prefer, zero gradient.
    flat = flat_grad(VineBatch(obs, actions, torch.ones(6, 4), log_q, False).surrogate(policy), params)
    assert flat.abs().max() < 1e-5
    # At theta_old the weights are uniform: the objective is the mean of Q.
    with torch.no_grad():
        at_old = float(VineBatch(obs, actions, q, log_q, False).surrogate(policy))
    assert at_old == pytest.approx(float(q.mean()), abs=1e-5)


def test_rollout_set_is_drawn_without_replacement_from_the_trunk():
    torch.manual_seed(3)
    plan = choose_rollout_states(steps_per_env=10, num_envs=3, num_states=12)
    pairs = [(t, n) for t, envs in plan.items() for n in envs]
    assert len(pairs) == len(set(pairs)) == 12
    assert all(0 <= t < 10 and 0 <= n < 3 for t, n in pairs)
