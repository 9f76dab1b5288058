"""Fast elementwise kernels for the simulator on CPU: random numbers and a cosine.

Why not ``jax.random`` and ``jnp.cos``: on CPU, XLA runs threefry at ~15 ns per 32 random bits and
``cos`` at ~6 ns per element (neither vectorises), while ``log``, ``sqrt`` and integer multiplies
run at under 1 ns. Noise (n x d normals per dataset) and random-Fourier-feature cosines
(n x d x features per dataset) are almost all of a simulation's work, so these two kernels set its
speed (benchmarks/simulate.py).

- ``bits``: a counter-based generator in the SplitMix style. Element i is
  ``triple32(triple32(i * golden + k0) ^ k1)`` with (k0, k1) drawn from the caller's JAX key, and
  triple32 Wellons' integer hash (the lowest-bias 32-bit three-multiply hash his search found).
  Keys still come from ``jax.random`` (split/fold_in), so streams stay reproducible and independent
  per graph; one call yields at most 2**32 values.
- ``normal``: Box-Muller on two 24-bit uniforms.
- ``cos``, ``sincos``: Cody-Waite reduction by pi/2 in three parts and Cephes' single-precision minimax
  polynomials on [-pi/4, pi/4]; absolute error below 1e-6 for |x| < 1e4 (tests/test_fastrand.py).

Everything is float32/uint32 and pure, so it jits and vmaps like jax.random.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt32

_GOLDEN = 0x9E3779B9
_TWO_OVER_PI = 2.0 / math.pi
# pi/2 = _P1 + _P2 + _P3, each exact in few enough bits that j * _Pk is exact for |j| < 2**13
_P1, _P2, _P3 = 1.5703125, 4.837512969970703125e-4, 7.54978995489188216e-8


def _triple32(x: UInt32[Array, "..."]) -> UInt32[Array, "..."]:
    x = x ^ (x >> 17)
    x = x * jnp.uint32(0xED5AD4BB)
    x = x ^ (x >> 11)
    x = x * jnp.uint32(0xAC4C1B51)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x31848BAB)
    return x ^ (x >> 14)


def bits_at(key: jax.Array, index: UInt32[Array, "..."]) -> UInt32[Array, "..."]:
    """Element `index` of the key's stream of uniform uint32 values (random access). The second
    keyed round matters: with one, two keys' streams would be shifted copies of each other."""
    k = jax.random.bits(key, (2,), jnp.uint32)
    return _triple32(_triple32(index.astype(jnp.uint32) * jnp.uint32(_GOLDEN) + k[0]) ^ k[1])


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


def normal(key: jax.Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
    """Standard normal float32 by Box-Muller: two uniforms give two independent normals."""
    size = math.prod(shape)
    half = (size + 1) // 2
    i = jax.lax.iota(jnp.uint32, half)  # elements i and half + i of the stream make a pair
    radius = jnp.sqrt(-2.0 * jnp.log(_unit(bits_at(key, i))))
    s, c = sincos((2.0 * math.pi) * _unit(bits_at(key, i + jnp.uint32(half))) - math.pi)
    z = jnp.concatenate([radius * c, radius * s])
    return z[:size].reshape(shape)


def normal_at(key: jax.Array, index: UInt32[Array, "..."]) -> Float[Array, "..."]:
    """Element `index` of the key's stream of standard normals (random access: a sparse subset of
    a large array is drawn without drawing the rest; one Box-Muller pair per value)."""
    i = index.astype(jnp.uint32) * jnp.uint32(2)
    radius = jnp.sqrt(-2.0 * jnp.log(_unit(bits_at(key, i))))
    return radius * cos((2.0 * math.pi) * _unit(bits_at(key, i + jnp.uint32(1))) - math.pi)


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


def cos(x: Float[Array, "..."]) -> Float[Array, "..."]:
    """cos(x) in float32, vectorised (|error| < 1e-6 for |x| < 1e4)."""
    r, q = _reduce(x)
    s, c = _sin_cos_poly(r)
    return jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))


def sincos(x: Float[Array, "..."]) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """(sin(x), cos(x)) in float32 from one reduction (|error| < 1e-6 for |x| < 1e4)."""
    r, q = _reduce(x)
    s, c = _sin_cos_poly(r)
    swap = (q & 1) == 1
    sin_x = jnp.where(swap, c, s) * jnp.where(q >= 2, -1.0, 1.0)
    cos_x = jnp.where(swap, s, c) * jnp.where((q == 1) | (q == 2), -1.0, 1.0)
    return sin_x, cos_x
