"""Fast elementwise kernels for the simulator on CPU: random numbers and a cosine.

Why not ``jax.random`` and ``jnp.cos``: on CPU, XLA runs threefry at ~15 ns per 32 random bits and
``cos`` at ~6 ns per element (neither vectorises), while ``log``, ``sqrt`` and integer multiplies
run at under 1 ns. Noise (n x d normals per dataset) and random-Fourier-feature cosines
(n x d x features per dataset) are almost all of a simulation's work, so these two kernels set its
speed (benchmarks/simulate.py).

- ``bits``: a counter-based generator in the SplitMix style. Element i is
  ``lowbias32(lowbias32(i * golden + k0) ^ k1)`` with (k0, k1) the words of the caller's JAX key,
  and lowbias32 Wellons' two-multiply integer hash (bias 0.17 in his avalanche measure; two keyed
  rounds of it mix far better than one round of the best three-multiply hash, and cost 14% less
  per normal than two rounds of that one). One call yields at most 2**32 values.
- ``split`` / ``fold_in``: new JAX keys whose words are the same hash of the parent's words (with
  a salt, so a key's children never repeat its own stream). On CPU each ``jax.random`` call is a
  threefry while loop (~0.3-0.7 us per graph of a batch, a dozen per simulated graph); these are
  one fused hash. Keys stay typed JAX keys, reproducible and independent per graph.
- ``normal``: Box-Muller, one value from each pair of words: the radius from one, the angle from
  the other drawn directly in [-pi/2, pi/2] with a random sign (no range reduction). The radius's
  log is Cephes' single-precision logf (``_log``: no edge cases to handle, as its argument is a
  positive normal float), half the cost of XLA's ``log`` on CPU; the normal costs 10% less.
- ``cos``: Cody-Waite reduction by pi in three parts, one even polynomial on [-pi/2, pi/2] (6
  terms, fitted near-minimax) and the sign of the half-turn; ``sincos``: reduction by pi/2 and
  Cephes' single-precision polynomials on [-pi/4, pi/4]. Absolute error below 1e-6 for
  |x| < 1e4 (tests/test_fastrand.py).
- ``IMPL``: the same hash as a JAX PRNG implementation (``jax.extend.random``), for libraries
  that call ``jax.random`` themselves: diffrax's VirtualBrownianTree splits and draws at every
  level of its tree, every step, for every cell.

Everything is float32/uint32 and pure, so it jits and vmaps like jax.random.
"""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt32

_GOLDEN = 0x9E3779B9
_TWO_OVER_PI = 2.0 / math.pi
# pi/2 = _P1 + _P2 + _P3, each exact in few enough bits that j * _Pk is exact for |j| < 2**13
_P1, _P2, _P3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8


def _lowbias32(x: UInt32[Array, "..."]) -> UInt32[Array, "..."]:
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x21F0AAAD)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x735A2D97)
    return x ^ (x >> 15)


_SPLIT_SALT, _FOLD_SALT = 0x5851F42D, 0x2545F491  # domain separation: draws, split, fold_in


def _words(key: jax.Array) -> tuple[UInt32[Array, ""], UInt32[Array, ""]]:
    """The key's two 32-bit words: a threefry key's own data (already a hash of its parent, so
    no threefry round is spent here); other key kinds are hashed down to two words."""
    data = jax.random.key_data(key)
    if data.shape[-1] != 2:
        data = jax.random.bits(key, (2,), jnp.uint32)
    return data[..., 0], data[..., 1]


def _hash_words(k0, k1, index: UInt32[Array, "..."], salt: int = 0) -> UInt32[Array, "..."]:
    x = index.astype(jnp.uint32) * jnp.uint32(_GOLDEN) + (k0 ^ jnp.uint32(salt))
    return _lowbias32(_lowbias32(x) ^ k1)


def _hash(key: jax.Array, index: UInt32[Array, "..."], salt: int = 0) -> UInt32[Array, "..."]:
    return _hash_words(*_words(key), index, salt)


def bits_at(key: jax.Array, index: UInt32[Array, "..."]) -> UInt32[Array, "..."]:
    """Element `index` of the key's stream of uniform uint32 values (random access). The second
    keyed round matters: with one, two keys' streams would be shifted copies of each other."""
    return _hash(key, index)


def _wrap(key: jax.Array, words: UInt32[Array, "... 2"]) -> jax.Array:
    return jax.random.wrap_key_data(words, impl=jax.random.key_impl(key))


def _split_words(k0, k1, shape: tuple[int, ...]) -> UInt32[Array, "... 2"]:
    index = jax.lax.iota(jnp.uint32, 2 * math.prod(shape)).reshape(*shape, 2)
    return _hash_words(k0, k1, index, _SPLIT_SALT)


def _fold_words(k0, k1, data) -> UInt32[Array, "2"]:
    index = jnp.asarray(data).astype(jnp.uint32) * jnp.uint32(2) + jnp.arange(2, dtype=jnp.uint32)
    return _hash_words(k0, k1, index, _FOLD_SALT)


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """`num` new keys (like ``jax.random.split``), as one fused hash of the key's words."""
    return _wrap(key, _split_words(*_words(key), (num,)))


def fold_in(key: jax.Array, data) -> jax.Array:
    """A new key for `data` (like ``jax.random.fold_in``; distinct from every ``split`` child)."""
    return _wrap(key, _fold_words(*_words(key), data))


def bits(key: jax.Array, shape: tuple[int, ...]) -> UInt32[Array, "..."]:
    """`shape` uniformly distributed uint32 values, determined by the JAX `key`."""
    size = math.prod(shape)
    if size > 2**32:
        raise ValueError(f"fastrand.bits draws at most 2**32 values per key (asked {size})")
    return bits_at(key, jax.lax.iota(jnp.uint32, size).reshape(shape))


def _unit(b: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Top 24 bits as a float32 in the open interval (0, 1)."""
    return (b >> 8).astype(jnp.float32) * (1.0 / 2**24) + (0.5 / 2**24)


def uniform(key: jax.Array, shape: tuple[int, ...], minval: float = 0.0,
            maxval: float = 1.0) -> Float[Array, "..."]:
    """Uniform float32 on (minval, maxval) (open: never exactly an endpoint)."""
    return minval + (maxval - minval) * _unit(bits(key, shape))


# Cephes logf: log(1 + f) = f - f^2 / 2 + f^3 P(f) for f in [sqrt(1/2) - 1, sqrt(2) - 1]
_LOG_P = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
          -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def _log(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """log(x) for positive normal float32 x (relative error < 1e-7; no zero, inf or NaN
    handling): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log 2 split in two for exact e log 2."""
    b = jax.lax.bitcast_convert_type(x, jnp.uint32)
    m = jax.lax.bitcast_convert_type((b & jnp.uint32(0x7FFFFF)) | jnp.uint32(0x3F800000),
                                     jnp.float32)
    big = m > math.sqrt(2.0)
    m = jnp.where(big, 0.5 * m, m)
    e = ((b >> 23).astype(jnp.int32) - 127 + big.astype(jnp.int32)).astype(jnp.float32)
    f = m - 1.0
    z = f * f
    p = _LOG_P[0]
    for a in _LOG_P[1:]:
        p = p * f + a
    return f + (f * z * p - 0.5 * z + e * -2.12194440e-4) + e * 0.693359375


def normal_at(key: jax.Array, index: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Element `index` of the key's stream of standard normals (random access: a sparse subset of
    a large array is drawn without drawing the rest). Box-Muller, one value per pair of words:
    radius from word 2i, angle from word 2i + 1 (top 24 bits: [-pi/2, pi/2]; bit 0: the sign,
    i.e. which half-circle), so each value is one independent fused computation."""
    i = index.astype(jnp.uint32) * jnp.uint32(2)
    b1, b2 = bits_at(key, i), bits_at(key, i + jnp.uint32(1))
    radius = jnp.sqrt(-2.0 * _log(_unit(b1)))
    z = radius * _cos_half_turn(math.pi * (_unit(b2) - 0.5))
    return jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(z, jnp.uint32) ^ ((b2 & 1) << 31), jnp.float32)


def normal(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Standard normal float32, `shape` values of the key's stream (see normal_at). One value per
    element rather than two per Box-Muller pair: XLA fuses it into one loop with no
    intermediate arrays, which is ~1.6x faster on CPU than splitting pairs."""
    size = math.prod(shape)
    if size > 2**31:
        raise ValueError(f"fastrand.normal draws at most 2**31 values per key (asked {size})")
    return normal_at(key, jax.lax.iota(jnp.uint32, size).reshape(shape))


def gumbel(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Standard Gumbel, -log(-log(u))."""
    return -jnp.log(-jnp.log(_unit(bits(key, shape))))


def categorical(key: jax.Array, logits: Float[Array, "... k"],
                shape: tuple[int, ...] | None = None) -> Array:
    """Index drawn with probabilities softmax(logits) along the last axis (Gumbel-max), like
    ``jax.random.categorical``; `shape` (default: the batch shape of logits) must end with it."""
    shape = logits.shape[:-1] if shape is None else shape
    g = gumbel(key, (*shape, logits.shape[-1]))
    return jnp.argmax(logits + g, axis=-1).astype(jnp.int32)


def randint(key: jax.Array, shape: tuple[int, ...], low, high) -> Array:
    """Integers uniform on [low, high) for ranges far below 2**24 (the uniform's resolution:
    bias below range / 2**24)."""
    low, high = jnp.asarray(low, jnp.int32), jnp.asarray(high, jnp.int32)
    span = (high - low).astype(jnp.float32)
    return low + jnp.minimum(jnp.floor(_unit(bits(key, shape)) * span).astype(jnp.int32),
                             high - low - 1)


def laplace(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Standard Laplace (density exp(-|z|) / 2) by inversion."""
    u = _unit(bits(key, shape)) - 0.5
    return -jnp.sign(u) * jnp.log1p(-2.0 * jnp.abs(u))


def cauchy(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Standard Cauchy, tan(pi (u - 1/2)), by inversion."""
    s, c = sincos(math.pi * (_unit(bits(key, shape)) - 0.5))
    return s / c


def _reduce(x: Float[Array, "..."]) -> tuple[Float[Array, "..."], Array]:
    """x = r + q * pi/2 with r in [-pi/4, pi/4]; returns (r, q mod 4)."""
    j = jnp.round(x * _TWO_OVER_PI)
    r = ((x - j * _P1) - j * _P2) - j * _P3
    return r, j.astype(jnp.int32) & 3


def _sin_cos_poly(r):
    z = r * r
    s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4))
    c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3
                                                              + z * 2.443315711809948e-5))
    return s, c


# cos(r) on [-pi/2, pi/2] as a polynomial in r^2 (Lawson-reweighted least squares; 1.2e-7 in float32)
_COS_HALF_TURN = (0.9999999997806538, -0.4999999935846968, 0.04166663625801728,
                  -0.0013888361399628263, 2.4760161319222724e-05, -2.6051494620448867e-07)


def _cos_half_turn(r: Float[Array, "..."]) -> Float[Array, "..."]:
    """cos(r) for r in [-pi/2, pi/2]."""
    z = r * r
    c = _COS_HALF_TURN[-1]
    for a in _COS_HALF_TURN[-2::-1]:
        c = c * z + a
    return c


def cos(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """cos(x) in float32, vectorised (|error| < 1e-6 for |x| < 1e4): x = r + j pi, so
    cos(x) = (-1)^j cos(r). All-float arithmetic: the parity of j costs no integer conversion."""
    j = jnp.round(x * (1.0 / math.pi))
    r = ((x - j * (2 * _P1)) - j * (2 * _P2)) - j * (2 * _P3)
    return _cos_half_turn(r) * (1.0 - 2.0 * (j - 2.0 * jnp.floor(0.5 * j)))


def sincos(x: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """(sin(x), cos(x)) in float32 from one reduction (|error| < 1e-6 for |x| < 1e4)."""
    r, q = _reduce(x)
    s, c = _sin_cos_poly(r)
    swap = (q & 1) == 1
    sin_x = jnp.where(swap, c, s) * jnp.where(q >= 2, -1.0, 1.0)
    cos_x = jnp.where(swap, s, c) * jnp.where((q == 1) | (q == 2), -1.0, 1.0)
    return sin_x, cos_x


# ------------------------------------------------------------------------------ as a JAX PRNG
def _impl_seed(seed: Array) -> UInt32[Array, "2"]:
    s = jnp.asarray(seed).astype(jnp.uint32)
    return _hash_words(s, jnp.uint32(_GOLDEN), jnp.arange(2, dtype=jnp.uint32), _SPLIT_SALT)


def _impl_bits(data: UInt32[Array, "2"], bit_width: int, shape: tuple[int, ...]) -> Array:
    if bit_width == 64:
        b = _hash_words(data[0], data[1], jax.lax.iota(jnp.uint32, 2 * math.prod(shape)))
        b = b.reshape(*shape, 2).astype(jnp.uint64)
        return (b[..., 0] << 32) | b[..., 1]
    b = _hash_words(data[0], data[1], jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape))
    dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}[bit_width]
    return (b >> (32 - bit_width)).astype(dtype)  # the top bits mix best


IMPL = jax.extend.random.define_prng_impl(
    key_shape=(2,), seed=_impl_seed, split=lambda w, shape: _split_words(w[0], w[1], shape),
    random_bits=_impl_bits, fold_in=lambda w, x: _fold_words(w[0], w[1], x),
    name="acbo_fastrand", tag="fr")
"""These kernels as a JAX key implementation, for code that calls ``jax.random`` itself (e.g.
diffrax's VirtualBrownianTree): ``jax.random.wrap_key_data(words, impl=IMPL)``. Same streams as
the functions above for the same two words."""
