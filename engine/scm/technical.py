"""Gene expression as it is measured: SERGIO's technical noise, and log2 counts per million.

`measure` turns the clean expression x [n, d] of a network's cells into what a single-cell
protocol reads, in SERGIO's order (Dibaeinia & Sinha 2020, as AVICI runs it):

1. outlier genes: gene j, with probability outlier_prob, is multiplied by
   exp(N(outlier_mean, outlier_scale^2)) in every cell;
2. library size: cell i is rescaled to the total L_i, log L_i ~ N(library_mean, library_scale^2):
   x_ij <- x_ij L_i / sum_j x_ij (an all-zero cell stays zero);
3. dropout: x_ij is kept with probability sigmoid(dropout_shape * (log(1 + x_ij) - q)), else 0,
   with q the dropout_percentile-th percentile of log(1 + x) over the cells' real genes;
4. counts: UMI counts ~ Poisson(x_ij).

Two choices differ from AVICI's code, which re-draws the outlier genes and re-takes q for each
knockout batch: here a network's outlier genes are drawn once, and q is fixed by its
observational cells and reused for its interventional ones (one protocol, one experiment).

`log_cpm` is AVICI's standardisation of count data: log2(1e6 x_ij / sum_j x_ij) for x_ij > 0,
shifted by the smallest and scaled by the spread of those values over a reference (here the
observational cells); zeros (and all-zero cells) sit at the smallest value, 0.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from engine.scm import fastrand
from engine.scm.params import draw


class TechnicalNoise(eqx.Module):
    """One network's measurement protocol (scalars drawn per graph; padded genes untouched)."""

    outlier: Float[Array, " d"]  # each gene's factor: 1 unless it is an outlier gene
    library_mean: Float[Array, ""]
    library_scale: Float[Array, ""]
    dropout_shape: Float[Array, ""]
    dropout_percentile: Float[Array, ""]
    dropout_mid: Float[Array, ""]  # q; NaN until the observational cells fix it
    library: bool = eqx.field(static=True, default=True)
    dropout: bool = eqx.field(static=True, default=True)
    counts: bool = eqx.field(static=True, default=True)


def build_technical(spec, key, var_mask: Bool[Array, " d"]) -> TechnicalNoise:
    """`spec`: any object with the fields of engine.spec.mechanisms.TechnicalNoise."""
    d = var_mask.shape[0]
    ks = fastrand.split(key, 9)
    hit = fastrand.uniform(ks[0], (d,)) < draw(spec.outlier_prob, ks[1])
    log_factor = draw(spec.outlier_mean, ks[2]) + draw(spec.outlier_scale, ks[3]) * fastrand.normal(
        ks[4], (d,))
    outlier = jnp.where(hit & var_mask & spec.outliers, jnp.exp(log_factor), 1.0)
    return TechnicalNoise(
        outlier, draw(spec.library_mean, ks[5]), draw(spec.library_scale, ks[6]),
        draw(spec.dropout_shape, ks[7]), draw(spec.dropout_percentile, ks[8]),
        jnp.float32(jnp.nan), spec.library, spec.dropout, spec.counts)


def library_size(key, x: Float[Array, "n d"], mean, scale) -> Float[Array, "n d"]:
    """Step 2: each cell's profile rescaled to a lognormal total."""
    total = jnp.exp(mean + scale * fastrand.normal(key, (x.shape[0],)))
    rowsum = x.sum(1)
    return x * (total / jnp.where(rowsum > 0, rowsum, 1.0))[:, None]


def dropout_mid(x: Float[Array, "n d"], percentile, real: Bool[Array, " d"]) -> Float[Array, ""]:
    """q: the percentile of log(1 + x) over the real genes of every cell (NumPy's linear rule)."""
    return jnp.nanpercentile(jnp.where(real, jnp.log1p(x), jnp.nan), percentile)


def keep_probability(x: Float[Array, "n d"], shape, mid) -> Float[Array, "n d"]:
    return jax.nn.sigmoid(shape * (jnp.log1p(x) - mid))


def poisson(key, rate: Float[Array, "..."]) -> Float[Array, "..."]:
    """Poisson(rate) draws as float32, on fastrand: Knuth's product of uniforms below rate 10,
    Hormann's transformed rejection (PTRS, as numpy and jax use) from 10, both in one loop
    that stops when every draw is accepted. jax.random.poisson (threefry, two loops) added
    ~4 s of compile time per use; the simulator measures twice per graph (obs, interventions).
    Non-finite rates come back as they are (a NaN rate would never be accepted)."""
    finite = jnp.isfinite(rate)
    lam = jnp.where(finite, jnp.maximum(rate, 0.0), 0.0)
    small = lam < 10.0
    slam, loglam = jnp.sqrt(lam), jnp.log(jnp.maximum(lam, 1e-30))
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_alpha = jnp.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    limit = jnp.exp(-lam)  # Knuth: the count of uniforms whose product stays above e^-rate

    def body(c):
        i, done, k, prod = c
        u0, v = (fastrand.uniform(kk, lam.shape) for kk in fastrand.split(fastrand.fold_in(key, i)))
        prod = prod * u0
        knuth_done = prod <= limit
        u = u0 - 0.5
        us = 0.5 - jnp.abs(u)
        kk = jnp.floor((2.0 * a / us + b) * u + lam + 0.43)
        ok = ((us >= 0.07) & (v <= vr)) | (
            (kk >= 0) & ((us >= 0.013) | (v <= us))
            & (jnp.log(v) + log_alpha - jnp.log(a / (us * us) + b)
               <= -lam + kk * loglam - jax.lax.lgamma(kk + 1.0)))
        new = jnp.where(small, knuth_done, ok) & ~done
        k = jnp.where(small, jnp.where(done, k, k + (~knuth_done)), jnp.where(new, kk, k))
        return i + 1, done | new, k, prod

    zero = jnp.zeros_like(lam)
    c = (jnp.int32(0), jnp.zeros(lam.shape, bool), zero, jnp.ones_like(lam))
    k = jax.lax.while_loop(lambda c: ~c[1].all(), body, c)[2]
    return jnp.where(finite, k, rate)


def measure(tech: TechnicalNoise, key, x: Float[Array, "n d"], real: Bool[Array, " d"]
            ) -> tuple[Float[Array, "n d"], Float[Array, ""]]:
    """(the measured cells, the dropout midpoint q used: `tech.dropout_mid`, or where that is
    NaN, the one these cells give). `x` is clean non-negative expression, 0 at padded genes."""
    k_lib, k_drop, k_count = fastrand.split(key, 3)
    x = x * tech.outlier
    if tech.library:
        x = library_size(k_lib, x, tech.library_mean, tech.library_scale)
    mid = tech.dropout_mid
    if tech.dropout:
        mid = jnp.where(jnp.isnan(mid), dropout_mid(x, tech.dropout_percentile, real), mid)
        keep = fastrand.uniform(k_drop, x.shape) < keep_probability(x, tech.dropout_shape, mid)
        x = jnp.where(keep, x, 0.0)
    if tech.counts:
        x = poisson(k_count, x)
    return x, mid


# ------------------------------------------------------------------------- log2 counts per million
def _log2_cpm(x: Float[Array, "n d"], real: Bool[Array, " d"]) -> Float[Array, "n d"]:
    """log2(1e6 x / row total) where x > 0 on a real gene, NaN elsewhere."""
    pos = (x > 0) & real
    total = jnp.where(real, x, 0.0).sum(1, keepdims=True)
    return jnp.where(pos, jnp.log2(jnp.where(pos, x, 1.0) / jnp.maximum(total, 1e-30) * 1e6), jnp.nan)


def log_cpm_reference(x: Float[Array, "n d"], real: Bool[Array, " d"]
                      ) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """(shift, spread): the smallest and the standard deviation of the log2 CPM values of the
    non-zero counts in `x` (0 and 1 where there are none, or no spread)."""
    v = _log2_cpm(x, real)
    shift, spread = jnp.nanmin(v), jnp.nanstd(v)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    spread = jnp.where(jnp.isfinite(spread) & (spread > 0), spread, 1.0)
    return shift, spread


def log_cpm(x: Float[Array, "n d"], shift, spread, real: Bool[Array, " d"]) -> Float[Array, "n d"]:
    """(log2 CPM - shift) / spread, zeros and padded genes at 0; a cell with a non-finite value
    stays non-finite (for the simulator's health check)."""
    v = (_log2_cpm(x, real) - shift) / spread
    bad = ~jnp.isfinite(jnp.where(real, x, 0.0)).all(1, keepdims=True)
    return jnp.where(bad & real, jnp.nan, jnp.where(jnp.isnan(v), 0.0, v))
