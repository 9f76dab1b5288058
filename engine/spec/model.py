"""[model] and [loss]: the amortized predictor and what it is trained to minimise."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from engine.spec.base import Section, error_at


class StatsModel(Section):
    """Parent-set predictor over data statistics.

    From the [n, d, 2] data tensor it computes, inside the module, per-variable statistics
    relative to the target (observational correlation and partial correlation, the target's
    response to interventions on each variable, ...), embeds them, and mixes variables with
    `layers` blocks of self-attention over the variable axis. Equivariant over variables and
    independent of their number, so a model trained on 3-8 nodes runs on 20. The graph head
    runs the parent head once per target (shared statistics). `quadratic` adds second-order
    dependence statistics (correlations and partial correlations of the variables and their
    squares), which see mechanisms that correlations miss (even or spread-moving ones).
    `triplets` adds, per candidate parent, what every third variable says about the pair:
    correlations and partial correlations of the triple given all others, all but one, or the
    third alone, pooled over third variables. They are the collider tests that separate parents
    from spouses and orient edges, which pairwise statistics cannot express; O(d^3) per graph.
    `additive` adds additive nonlinear dependence: how much of a variable's regression on the
    others' smooth functions (sin and cos of each) is lost without one of them, and what that
    one alone explains; they see RFF and MLP mechanisms that (partial) correlations miss;
    O((7 d)^3) per graph.
    `edge_layers` adds blocks over the [d, d] grid of edge representations (the per-target
    states), in which each edge reads every third variable's edges with its two ends (common
    child, common parent, path): the reasoning across edges that explains a spouse away in a
    dense graph; the parent head is then a column of the graph head. O(d^3 * 96) per block.
    """

    kind: Literal["stats"]
    dim: int = Field(default=64, gt=0)
    layers: int = Field(default=2, ge=0)
    heads: int = Field(default=4, gt=0)
    quadratic: bool = False
    triplets: bool = False
    additive: bool = False
    edge_layers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "StatsModel":
        if self.dim % self.heads:  # each head attends over dim / heads channels
            raise error_at(("heads",), f"dim ({self.dim}) must be a multiple of heads ({self.heads})")
        return self

    def build(self, key):
        from engine.models.stats import StatsPredictor

        return StatsPredictor(self, key)

    def forward_flops(self, n: int, d: int, graph: bool = False) -> float:
        """Multiply-adds x 2 of one forward pass on n rows, d variables (one target; every
        target with `graph`): the pair statistics, then per target the token embedding and
        `layers` relational-attention blocks. Their pair-bias MLP reads only the pair statistics,
        so it runs once for every target (vmap leaves what a target does not touch unbatched)."""
        f = 17 + (5 if self.quadratic else 0) + (2 if self.additive else 0)
        pairs = 12 * n * d * d + 2 * d**3
        if self.additive:  # 7 d basis columns: their Gram, its inverse, per-target Schur blocks
            pairs += 2 * n * (7 * d) ** 2 + 2 * (7 * d) ** 3 + 4 * d * d * 7**3
        if self.quadratic:  # the stacked [z, z^2]: a 2d x 2d correlation and its inverse
            pairs += 8 * n * d * d + 16 * d**3
        from engine.models.features import N_TRIPLET_SUMMARIES
        from engine.models.stats import TRIPLET_WIDTH

        width = TRIPLET_WIDTH if self.triplets else 0
        tokens = 2 * d * ((3 * f + 1 + (2 * width + N_TRIPLET_SUMMARIES if width else 0)) * self.dim + self.dim**2)
        if self.triplets:  # 12 triple statistics and an MLP 12 -> 32 -> width for every (j, k)
            tokens += 2 * d * d * (30 + 12 * 32 + 32 * width)
        block = 2 * d * 12 * self.dim**2 + 4 * d * d * self.dim
        bias = self.layers * 2 * d * d * (f * 32 + 32 * self.heads)
        if not self.edge_layers:
            return pairs + bias + (d if graph else 1) * (tokens + self.layers * block)
        # edge blocks: per edge 2 x 192-wide gated projections, an output gate, the 96 -> dim
        # projection and the MLP; the three d^3 contractions of 32 channels; any target's
        # parents need the whole graph
        from engine.models.stats import EDGE_WIDTH

        c = 3 * EDGE_WIDTH
        edge = 2 * d * d * self.dim * (4 * c + self.dim + c + 4 * self.dim) + 2 * c * d**3
        return pairs + bias + d * (tokens + self.layers * block) + self.edge_layers * edge


class AviciModel(Section):
    """AVICI (Lorch et al. 2022): a transformer over the raw [n, d, 2] data tensor.

    Linear embedding to `dim`, `layers` pre-LayerNorm residual blocks alternating self-attention
    over variables and over samples (`heads` x `key_size`, feed-forward `ff_factor` x `dim`).
    Edge logits add AVICI's cosine head on the rows' max-pool (learned temperature and bias)
    and a pairwise-moment head: per channel of the final cell states, the correlation over rows
    between two variables and their partial correlation given the others, through a per-pair
    MLP (without it the model learned no pairwise dependence in short training, issue 13).
    `row_chunk` = N attends over samples within chunks of N rows (approximate, memory O(n N)
    instead of O(n^2)) and processes rows chunk by chunk, for datasets of 10,000s of rows.
    `dropout` needs a key.
    """

    kind: Literal["avici"]
    dim: int = Field(default=64, gt=0)
    layers: int = Field(default=4, ge=0)
    heads: int = Field(default=4, gt=0)
    key_size: int = Field(default=16, gt=0)
    ff_factor: int = Field(default=4, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    row_chunk: Optional[int] = Field(default=None, gt=0)

    def build(self, key):
        from engine.models.avici import AviciPredictor

        return AviciPredictor(self, key)

    def forward_flops(self, n: int, d: int, graph: bool = False) -> float:
        """Multiply-adds x 2 of one forward pass on n rows, d variables (the graph comes with
        it): per block the projections and feed-forward of every cell, and attention over
        samples (~n^2 per variable) or over variables (~d^2 per row), alternating; then the
        moment head (two projections per cell, cross sums over rows, a d x d inverse per
        channel, a per-pair MLP)."""
        cells, inner = n * d, self.heads * self.key_size
        dense = 2 * cells * (4 * self.dim * inner + 2 * self.dim * self.ff_factor * self.dim)
        over_samples, over_variables = 4 * d * n * n * inner, 4 * n * d * d * inner
        half = self.layers // 2
        moments = (4 * cells * self.dim**2 + 4 * n * d * d * self.dim + 2 * self.dim * d**3
                   + 2 * d * d * 7 * self.dim**2)
        return (self.layers * dense + half * over_samples + (self.layers - half) * over_variables
                + 2 * d * d * self.dim + moments)


ModelSpec = Annotated[Union[StatsModel, AviciModel], Field(discriminator="kind")]


class _LossTerms(Section):
    """Optional weighted terms shared by every loss kind (0 switches a term off)."""

    calibration_weight: float = Field(default=0.0, ge=0)
    graph_weight: float = Field(default=0.0, ge=0)
    acyclicity_weight: float = Field(default=0.0, ge=0)
    intervention_weight: float = Field(default=0.0, ge=0)
    power_iterations: int = Field(default=10, gt=0)
    calibration_bins: int = Field(default=10, gt=1)


class BceLoss(_LossTerms):
    """Binary cross-entropy of the parent logits against the true parents of the target.

    `pos_weight` > 1 up-weights the rare positive entries (parents are sparse).
    Extra terms: `calibration_weight` (soft-binned ECE of the parent probabilities),
    `graph_weight` (BCE of the full-graph head against the adjacency), `acyclicity_weight`
    (spectral radius of the edge-probability matrix times the trainer's dual variable),
    `intervention_weight` (BCE of a head guessing intervened cells from values alone).
    """

    kind: Literal["bce"]
    pos_weight: float = Field(default=1.0, gt=0)


class FocalLoss(_LossTerms):
    """Focal loss (Lin et al. 2017): BCE with each entry scaled by (1 - p_true)^gamma.

    Down-weights entries the model already gets right, so rare parents are not drowned by easy
    non-parents. `alpha` weights positives by alpha and negatives by 1 - alpha (unset: 1 and 1,
    so gamma = 0 is plain BCE). Extra terms as for `bce`.
    """

    kind: Literal["focal"]
    gamma: float = Field(default=2.0, ge=0)
    alpha: Optional[float] = Field(default=None, gt=0, lt=1)


class KlExpertLoss(_LossTerms):
    """KL divergence from the expert's parent marginals to the model's (per-variable Bernoulli).

    The model then imitates PARENT_SCALE's posterior, including its uncertainty.
    Extra terms as for `bce`.
    """

    kind: Literal["kl_expert"]


LossSpec = Annotated[Union[BceLoss, FocalLoss, KlExpertLoss], Field(discriminator="kind")]
