"""[model] and [loss]: the amortized predictor and what it is trained to minimise."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from engine.spec.base import Section


class StatsModel(Section):
    """Parent-set predictor over data statistics.

    From the [n, d, 2] data tensor it computes, inside the module, per-variable statistics
    relative to the target (observational correlation and partial correlation, the target's
    response to interventions on each variable, ...), embeds them, and mixes variables with
    `layers` blocks of self-attention over the variable axis. Equivariant over variables and
    independent of their number, so a model trained on 3-8 nodes runs on 20.
    """

    kind: Literal["stats"]
    dim: int = Field(default=64, gt=0)
    layers: int = Field(default=2, ge=0)
    heads: int = Field(default=4, gt=0)

    def build(self, key):
        from engine.models.stats import StatsPredictor

        return StatsPredictor(self, key)


ModelSpec = Annotated[Union[StatsModel], Field(discriminator="kind")]


class BceLoss(Section):
    """Binary cross-entropy of the parent logits against the true parents of the target.

    `pos_weight` > 1 up-weights the rare positive entries (parents are sparse).
    """

    kind: Literal["bce"]
    pos_weight: float = Field(default=1.0, gt=0)


class KlExpertLoss(Section):
    """KL divergence from the expert's parent marginals to the model's (per-variable Bernoulli).

    The model then imitates PARENT_SCALE's posterior, including its uncertainty.
    """

    kind: Literal["kl_expert"]


LossSpec = Annotated[Union[BceLoss, KlExpertLoss], Field(discriminator="kind")]
