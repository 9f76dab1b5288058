"""[optimize] (causal BO episodes on held-out SCMs: which surrogate and which acquisition) and
[policy] (the learned acquisition policy, trained with GRPO).

A strategy pairs a surrogate (what the episode believes about the target's parents) with an
acquisition (how it picks the next intervention). Each `problems` entry is a distribution of
held-out SCMs declared like an evaluation stage (overrides of [scm]); every strategy runs one
episode on each of its graphs, with the same keys, so strategies are compared on the same
graphs (paired intervals). `build()` imports the runtime (engine.cbo) lazily.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, model_validator

from engine.spec.base import Section, error_at
from engine.spec.evaluation import AS_OVERRIDES, SpecName, _stage_name, _unique
from engine.spec.scm import ScmSpec

StageName = Annotated[str, AfterValidator(_stage_name)]


class ExpertSurrogate(Section):
    """PARENT_SCALE's belief: the [expert]'s prior over parent sets, updated by Bayes' rule with
    every interventional row (the expert must be parent_scale)."""

    kind: Literal["expert"]

    def build(self, expert, model=None):
        from engine.cbo.surrogates import ExpertSurrogate as Runtime

        return Runtime(expert)


class ModelSurrogate(Section):
    """An amortized model's belief: its parent marginals on the buffer after every trial, turned
    into the `n_sets` most probable sets of at most `max_parents` variables (edges independent).
    `model`: the spec whose trained model to use (default: this spec's, or the one `[stage]
    uses` names)."""

    kind: Literal["model"]
    model: SpecName | None = None
    max_parents: int = Field(default=3, ge=1, le=8)
    n_sets: int = Field(default=32, ge=1, le=1024)

    def build(self, expert, model=None):
        from engine.cbo.surrogates import AmortizedSurrogate

        return AmortizedSurrogate(model, self.max_parents, self.n_sets)


class OracleSurrogate(Section):
    """The true parent set with certainty: causal BO's best case."""

    kind: Literal["oracle"]

    def build(self, expert, model=None):
        from engine.cbo.surrogates import OracleSurrogate as Runtime

        return Runtime()


class NoSurrogate(Section):
    """No belief (marginals 0): for acquisitions that ignore it, such as random."""

    kind: Literal["none"]

    def build(self, expert, model=None):
        from engine.cbo.surrogates import NullSurrogate

        return NullSurrogate()


SurrogateSpec = Annotated[Union[ExpertSurrogate, ModelSurrogate, OracleSurrogate, NoSurrogate],
                          Field(discriminator="kind")]


class EIAcquisition(Section):
    """PARENT_SCALE's expected improvement under the belief's mixture of causal GPs (its settings
    come from [expert]: anchors, ascent steps, GP fitting)."""

    kind: Literal["ei"]

    def build(self, expert, policy=None):
        from engine.cbo.acquisitions import ExpectedImprovement

        return ExpectedImprovement(expert)


class PolicyAcquisition(Section):
    """The learned policy of [policy]; `greedy`: its most probable action instead of a sample."""

    kind: Literal["policy"]
    greedy: bool = True

    def build(self, expert, policy=None):
        from engine.cbo.learned import LearnedPolicy

        return LearnedPolicy(policy, greedy=self.greedy)


class RandomAcquisition(Section):
    """A uniform candidate variable at a uniform value of its observational range."""

    kind: Literal["random"]

    def build(self, expert, policy=None):
        from engine.cbo.acquisitions import RandomAcquisition as Runtime

        return Runtime()


AcquisitionSpec = Annotated[Union[EIAcquisition, PolicyAcquisition, RandomAcquisition],
                            Field(discriminator="kind")]


class StrategySpec(Section):
    """One way to optimise: a named surrogate + acquisition pair (a side of the record)."""

    name: StageName
    surrogate: SurrogateSpec
    acquisition: AcquisitionSpec

    def build(self, expert, model=None, policy=None):
        """(surrogate, acquisition) runtime objects; `model` / `policy`: the trained modules
        the strategy reads (None where it reads none)."""
        return self.surrogate.build(expert, model), self.acquisition.build(expert, policy)


class ProblemSpec(Section):
    """Held-out SCMs to optimise on: `scm` overrides keys of [scm] (merged by the root, like an
    evaluation stage's); `n_graphs` episodes per strategy; `seed` (default: derived from the
    spec's seed and the problem's position)."""

    name: StageName
    description: str = ""
    n_graphs: int = Field(gt=0)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    scm: Annotated[ScmSpec | None, AS_OVERRIDES] = None


class OptimumSpec(Section):
    """How regret's reference optimum is found: exactly for linear SCMs; otherwise a Monte-Carlo
    estimate: `grid` values per variable over the allowed range, `mc_samples` draws each (the
    best of noisy means is biased low by about one standard error: reported as an estimate)."""

    grid: int = Field(default=21, ge=2)
    mc_samples: int = Field(default=2000, gt=0)


class OptimizeSpec(Section):
    """Causal BO episodes: `n_trials` single-node hard interventions per episode (value within
    the variable's observational range), the target minimised; every strategy on every graph of
    every problem."""

    n_trials: int = Field(default=10, gt=0)
    problems: list[ProblemSpec] = Field(min_length=1)
    strategies: list[StrategySpec] = Field(min_length=1)
    optimum: OptimumSpec = OptimumSpec()

    @model_validator(mode="after")
    def _names(self) -> "OptimizeSpec":
        _unique([p.name for p in self.problems], "problems")
        _unique([s.name for s in self.strategies], "strategies")
        return self

    def uses_policy(self) -> bool:
        return any(s.acquisition.kind == "policy" for s in self.strategies)

    def models(self) -> list[str | None]:
        """The models the strategies read (None: this spec's own / its `uses`)."""
        return list(dict.fromkeys(s.surrogate.model for s in self.strategies if s.surrogate.kind == "model"))


class Rewards(Section):
    """GRPO's reward per intervention: `improvement` x how much the outcome improves on the best
    so far (standardised target units), `information` x the entropy drop of the belief, and
    `parent_hit` x [the intervened variable is a true parent of the target]."""

    improvement: float = Field(default=1.0, ge=0)
    information: float = Field(default=0.2, ge=0)
    parent_hit: float = Field(default=0.2, ge=0)

    @model_validator(mode="after")
    def _some(self) -> "Rewards":
        if self.improvement + self.information + self.parent_hit == 0:
            raise error_at((), "every reward weight is 0: the policy would learn nothing")
        return self


class PolicySpec(Section):
    """The learned acquisition policy (engine.cbo.policy: attention over variables -> a variable
    and one of `value_bins` evenly spaced values of its range) and its GRPO training on SCMs
    simulated from `scm` (overrides of [scm]; default the [scm] distribution). Per step,
    `batch_graphs` graphs each give the states of an episode of `n_trials` trials (default:
    optimize.n_trials) of the policy's own choices; from every state `group_size` candidate
    interventions are simulated (outcome = mean of `outcome_samples` draws) and scored by the
    rewards, advantages normalised within the group; the clipped-ratio objective (`clip_eps`)
    with an entropy bonus (`entropy_weight`) takes `epochs` Adam steps (`lr`) per batch.
    `surrogate`: the belief during training: "linear_bayes" (PARENT_SCALE's exact posterior
    over sets of at most `max_parents`, uniform prior: cheap and jittable), "oracle" (the true
    parents: no information reward) or "model" (this spec's amortized model). Checkpoints,
    resume, budget and logs are the model trainer's."""

    dim: int = Field(default=32, gt=0)
    layers: int = Field(default=1, ge=1)
    heads: int = Field(default=2, ge=1)
    value_bins: int = Field(default=7, ge=2)
    steps: int = Field(default=300, gt=0)
    batch_graphs: int = Field(default=16, gt=0)
    group_size: int = Field(default=8, ge=2)
    epochs: int = Field(default=2, ge=1)
    clip_eps: float = Field(default=0.2, gt=0, lt=1)
    entropy_weight: float = Field(default=0.01, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    rewards: Rewards = Rewards()
    surrogate: Literal["linear_bayes", "oracle", "model"] = "linear_bayes"
    max_parents: int = Field(default=2, ge=1, le=4)
    outcome_samples: int = Field(default=16, gt=0)
    n_trials: int | None = Field(default=None, gt=0)
    checkpoint_every: int = Field(default=100, gt=0)
    log_every: int = Field(default=20, gt=0)
    scm: Annotated[ScmSpec | None, AS_OVERRIDES] = None

    def config(self, seed: int, n_trials: int, tensorboard: bool = False):
        """The runtime's plain GRPO settings."""
        from engine.cbo.grpo import GRPOConfig

        r = self.rewards
        return GRPOConfig(
            group_size=self.group_size, clip_eps=self.clip_eps, entropy_weight=self.entropy_weight,
            w_improve=r.improvement, w_info=r.information, w_hit=r.parent_hit, lr=self.lr,
            steps=self.steps, graphs_per_step=self.batch_graphs, epochs=self.epochs,
            episode_length=self.n_trials or n_trials, outcome_samples=self.outcome_samples,
            dim=self.dim, layers=self.layers, heads=self.heads, n_bins=self.value_bins,
            max_parents=self.max_parents, log_every=self.log_every,
            checkpoint_every=self.checkpoint_every, tensorboard=tensorboard, seed=seed)
