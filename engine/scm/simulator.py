"""From an [scm] spec to batches of SCMs and their datasets: jit + vmap over graphs.

Everything for graph g derives from ``jax.random.split(key, n_graphs)[g]``, so a seed gives the same
graphs and rows on every call and graph g does not depend on n_graphs.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from jaxtyping import Array, Bool, Float, Int

from engine.scm import fastrand
from engine.scm.graphs import argsort_small, random_graph, rank
from engine.scm.mechanisms import LinearMech, NoiseMech, build_mechanism, build_noise
from engine.scm.model import SCM
from engine.scm.params import draw, pick
from engine.scm.types import Dataset
from engine.spec import scm as S


class Diagnostics(eqx.Module):
    """Per-graph health of a simulation (leading graph axis when batched).

    nonfinite:     number of non-finite values in the dataset (simulate raises when any)
    clipped:       GRN only: fraction of cell expression values clipped at 0 (else 0)
    solver_failed: GRN only: the SDE solver did not finish (else False)
    obs_bound:     a bound on |obs| proven from the SCM's parameters (inf where none is known);
                   a batch whose bounds are all finite in float32 skips counting its obs
    """

    nonfinite: Int[Array, ""]
    clipped: Float[Array, ""]
    solver_failed: Bool[Array, ""]
    obs_bound: Float[Array, ""]


def _cpu_options() -> dict | None:
    """On CPU, 512-bit vectors where the host has them: the simulator is elementwise kernels
    over large arrays (noise, cosines), ~10% faster than at XLA's default preference of 256."""
    return {"xla_cpu_prefer_vector_width": 512} if jax.default_backend() == "cpu" else None


_FINITE = 1e37  # float32's largest is 3.4e38: the margin covers rounding in the bound's sums


def _count_nonfinite(x: Array) -> Int[Array, ""]:
    # Summed in float32 (exact below 2**24): an int sum made XLA write an int copy of the rows
    # before reducing them, as slow as drawing the noise at d = 50.
    return jnp.where(jnp.isfinite(x), 0.0, 1.0).sum().astype(jnp.int32)


class SimulationError(RuntimeError):
    """A simulation produced non-finite values or a failed solve (never silent NaNs)."""


class Simulator:
    """The runtime sampler of an ScmSpec: ``Simulator(spec)(key, n_graphs) -> (SCM, Dataset)``.

    `base_dir` resolves relative `from_file` paths (default: the spec file's directory as given
    to validation). Arrays are padded to ``d = self.d``. A batch is split over `devices` (default:
    this host's) on its graph axis, like a training batch; graph g is the same on any number.
    """

    def __init__(self, spec: S.ScmSpec, base_dir: str | Path | None = None, devices=None):
        self.spec = spec
        self.devices = list(devices) if devices is not None else jax.local_devices()
        if not self.devices:
            raise ValueError("Simulator: `devices` is empty; give at least one device")
        self._mesh = Mesh(np.array(self.devices), ("graphs",))
        self.files = {
            c: g.read(base_dir) for c, g in enumerate(spec.graphs) if isinstance(g, S.FromFile)
        }
        d = max(spec.sizes) if len(self.files) < len(spec.graphs) else 0
        self.d = max([d] + [len(f["names"]) for f in self.files.values()])
        self.n_obs = spec.n_obs
        self.n_slots = spec.n_intervened(self.d)
        self.n_int = spec.interventions.rows_per_node * self.n_slots
        self._prepare_files()
        self._batch = jax.jit(self._many, static_argnums=(1, 2), compiler_options=_cpu_options())
        self._in_degree = jax.jit(self._max_in_degree, static_argnums=1)
        self._bound: int | None = None  # rff's sticky in-degree bound (see _parent_bound)

    # ------------------------------------------------------------------ fixed graphs
    def _prepare_files(self) -> None:
        spec, d, C = self.spec, self.d, len(self.spec.graphs)
        self.fG = np.zeros((C, d, d), np.int32)
        self.forder = np.tile(np.arange(d, dtype=np.int32), (C, 1))
        self.fk = np.zeros(C, np.int32)
        self.fparam = np.zeros(C, bool)
        self.fW = np.zeros((C, d, d), np.float32)
        self.fb = np.zeros((C, d), np.float32)
        self.fsigma = np.ones((C, d), np.float32)
        self.ftarget = np.zeros(C, np.int32)
        self.fnames_idx = np.zeros((C, len(spec.interventions.names or [])), np.int32)
        for c, f in self.files.items():
            k = len(f["names"])
            names = [str(n) for n in f["names"]]
            self.fG[c, :k, :k] = f["G"]
            self.forder[c, :k] = f["order"]
            self.fk[c] = k
            if self.spec.graphs[c].use_parameters and "W" in f:
                self.fparam[c] = True
                self.fW[c, :k, :k] = f["W"]
                self.fb[c, :k] = f.get("b", np.zeros(k))
                self.fsigma[c, :k] = f.get("sigma", np.ones(k))
            for name in ([spec.target.name] if isinstance(spec.target, S.Named) else []):
                if name not in names:
                    raise ValueError(f"no variable named '{name}' in {spec.graphs[c].path}")
                self.ftarget[c] = names.index(name)
            for i, name in enumerate(spec.interventions.names or []):
                if name not in names:
                    raise ValueError(f"no variable named '{name}' in {spec.graphs[c].path}")
                self.fnames_idx[c, i] = names.index(name)
        self.all_param_files = bool(self.fparam.all())

    # ------------------------------------------------------------------ one graph
    def graph(self, key) -> tuple[Int[Array, ""], Int[Array, "d d"], Int[Array, " d"], Array]:
        """(component, G, order, k) for one graph."""
        spec, d = self.spec, self.d
        kc, ks, kg = fastrand.split(key, 3)
        comp = pick(kc, [g.weight for g in spec.graphs])
        k = jnp.asarray(spec.sizes, jnp.int32)[pick(ks, spec.size_weights)]
        Gs, orders, kk = [], [], []
        for c, g in enumerate(spec.graphs):
            if c in self.files:
                Gs.append(jnp.asarray(self.fG[c]))
                orders.append(jnp.asarray(self.forder[c]))
                kk.append(jnp.int32(self.fk[c]))
            else:
                G, order = random_graph(g, fastrand.fold_in(kg, c), k, d)
                Gs.append(G)
                orders.append(order)
                kk.append(k)
        if len(Gs) == 1:
            G, order, k = Gs[0], orders[0], kk[0]
        else:
            G, order, k = jnp.stack(Gs)[comp], jnp.stack(orders)[comp], jnp.stack(kk)[comp]
        # The target needs a parent: a graph that drew no edge gets its first two nodes linked.
        i = jnp.arange(d)
        link = (G.sum() == 0) & (i[:, None] == order[0]) & (i[None, :] == order[1])
        G = jnp.maximum(G, link.astype(G.dtype))  # elementwise: a scatter copies all of G
        return comp, G, order, k

    def _target(self, key, comp, G, var_mask) -> Int[Array, ""]:
        t = self.spec.target
        if isinstance(t, S.Named):
            return jnp.asarray(self.ftarget)[comp]
        ok = var_mask & (G.sum(0) > 0)
        if isinstance(t, S.Sink):
            ok = ok & (G.sum(1) == 0)
        return fastrand.categorical(key, jnp.where(ok, 0.0, -jnp.inf))

    def build_scm(self, key, max_parents: int | None = None) -> tuple[SCM, Int[Array, ""]]:
        """Draw one SCM (graph, target, mechanisms, noise; output transform = identity) and the
        index of the graph component it came from. `max_parents` (static): a bound on the
        graph's in-degree, which lets mechanisms use sparse parent lists (same SCM either way)."""
        spec, d = self.spec, self.d
        kg, kt, km, kmi, kn, kni = fastrand.split(key, 6)
        comp, G, order, k = self.graph(kg)
        var_mask = jnp.arange(d) < k
        target = self._target(kt, comp, G, var_mask)
        Gf = G.astype(jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        grn = None
        mechs, noises = [], []
        mech_index, noise_index = jnp.zeros(d, jnp.int32), zero
        if spec.uses_grn:
            from engine.scm.grn import build_grn

            grn = build_grn(spec.mechanism[0], km, Gf, order, var_mask)
        elif not self.all_param_files:
            mechs = [build_mechanism(m, fastrand.fold_in(km, i), Gf, max_parents)
                     for i, m in enumerate(spec.mechanism)]
            shape = (d,) if spec.mechanism_mix == "node" else ()
            mech_index = jnp.broadcast_to(pick(kmi, [m.weight for m in spec.mechanism], shape),
                                          (d,))
            noises = [build_noise(nz, fastrand.fold_in(kn, i), Gf)
                      for i, nz in enumerate(spec.noise)]
            noise_index = pick(kni, [nz.weight for nz in spec.noise])
        if self.fparam.any() and grn is None:  # bnlearn parameters: a real linear-Gaussian SCM
            is_param = jnp.asarray(self.fparam)[comp]
            mechs.append(LinearMech(jnp.asarray(self.fW)[comp], jnp.asarray(self.fb)[comp]))
            noises.append(NoiseMech(jnp.asarray(self.fsigma)[comp], None, "gaussian"))
            mech_index = jnp.where(is_param, len(mechs) - 1, mech_index)
            noise_index = jnp.where(is_param, len(noises) - 1, noise_index)
        return SCM(
            adjacency=G, var_mask=var_mask, order=order, target=target,
            mech_index=mech_index.astype(jnp.int32), mechanisms=tuple(mechs),
            noise_index=jnp.asarray(noise_index, jnp.int32), noises=tuple(noises),
            loc=jnp.zeros(d), scale=jnp.ones(d), grn=grn,
            transform="log_cpm" if spec.standardize == "log_cpm" else "affine",
        ), comp

    def interventions(self, key, scm: SCM, comp) -> tuple[Bool[Array, "r d"], Float[Array, "r d"],
                                                     Bool[Array, " r"]]:
        """(int_mask, do_values, row_mask): rows_per_node rows per intervened node, nodes in
        variable order, unused slots (smaller graphs, fewer nodes) masked out."""
        iv, d = self.spec.interventions, self.d
        k1, k2 = fastrand.split(key)
        idx = jnp.arange(d)
        eligible = scm.var_mask & (idx != scm.target)
        n_elig = eligible.sum()
        if iv.names is not None:
            sel = jnp.zeros(d, bool).at[jnp.asarray(self.fnames_idx)[comp]].set(True)
        else:
            if iv.fraction is not None:
                m = jnp.ceil(iv.fraction * n_elig).astype(jnp.int32)
            elif iv.count is not None:
                m = jnp.minimum(iv.count, n_elig)
            else:
                m = n_elig
            u = jnp.where(eligible, fastrand.uniform(k1, (d,)), 2.0)
            sel = eligible & (rank(u) < m)
        nodes = argsort_small(jnp.where(sel, idx, d + idx))[: self.n_slots]
        slot = jnp.arange(self.n_int) // max(iv.rows_per_node, 1)
        node = nodes[slot]
        row_mask = slot < sel.sum()
        mask = (node[:, None] == idx[None, :]) & row_mask[:, None]
        if iv.value_per == "node":
            vals = draw(iv.value, k2, (d,))[node]
        else:
            vals = draw(iv.value, k2, (self.n_int,))
        return mask, jnp.where(mask, vals[:, None], 0.0), row_mask

    def one(self, key, max_parents: int | None = None,
            count_obs: bool = True) -> tuple[SCM, Dataset, Diagnostics]:
        """One graph's SCM, dataset and diagnostics (`max_parents`: see build_scm; `count_obs`
        False leaves the obs out of `nonfinite`, for callers that check them by `obs_bound`)."""
        ks, ko, ki, kv = fastrand.split(key, 4)
        scm, comp = self.build_scm(ks, max_parents)
        d = self.d
        clipped, failed, bound = jnp.float32(0.0), jnp.bool_(False), jnp.float32(jnp.inf)
        if scm.grn is not None:  # the cells fix the protocol's dropout midpoint and log_cpm's reference
            from engine.scm.grn import observe_cells

            scm, obs, (clipped, failed) = observe_cells(scm, ko, self.n_obs)
        else:
            obs, bound = scm.observational_with_bound(ko, self.n_obs)
        if self.spec.standardize is True:
            loc = jnp.where(scm.var_mask, obs.mean(0), 0.0)
            sd = obs.std(0)
            sd = jnp.where(scm.var_mask & (sd > 1e-8) & jnp.isfinite(sd), sd, 1.0)
            scm = eqx.tree_at(lambda s: (s.loc, s.scale), scm, (loc, sd))
            obs = jnp.where(scm.var_mask, (obs - loc) / sd, 0.0)
            bound = (bound + jnp.abs(loc).max()) / sd.min()
        mask, vals, row_mask = self.interventions(ki, scm, comp)
        mode = "hard" if isinstance(self.spec.interventions, S.Hard) else self.spec.interventions.mode
        ints = scm.sample(kv, mask, vals, mode=mode) if self.n_int else jnp.zeros((0, d))
        ints = jnp.where(row_mask[:, None], ints, 0.0)
        data = Dataset(obs=obs, int_values=ints, int_mask=mask, int_row_mask=row_mask)
        nonfinite = _count_nonfinite(ints) + (_count_nonfinite(obs) if count_obs else 0)
        return scm, data, Diagnostics(nonfinite, clipped, failed, bound)

    # ------------------------------------------------------------------ batches
    def _many(self, key, n_graphs: int, max_parents: int | None):
        # Splitting inside the jit: an eager split costs more than simulating small graphs. Graph
        # g's key does not depend on the count, so a count that does not divide over the devices
        # is rounded up and the spare graphs dropped.
        per_device = -(-n_graphs // len(self.devices))
        keys = jax.random.split(key, per_device * len(self.devices))

        def local(keys):  # one device's graphs
            scm, data, diag = jax.vmap(lambda k: self.one(k, max_parents, count_obs=False))(keys)
            # Reading every row only to find them finite costs ~15% of a linear simulation; a
            # batch whose bounds prove it skips that (a real branch: the predicate is batch-wide).
            extra = jax.lax.cond(jnp.all(diag.obs_bound < _FINITE),
                                 lambda o: jnp.zeros(len(o), jnp.int32),
                                 jax.vmap(_count_nonfinite), data.obs)
            return scm, data, eqx.tree_at(lambda t: t.nonfinite, diag, diag.nonfinite + extra)

        if len(self.devices) > 1:  # per device, so that no step waits for another device
            local = jax.shard_map(local, mesh=self._mesh, in_specs=P("graphs"),
                                  out_specs=P("graphs"), check_vma=False)
        out = local(keys)
        return out if len(keys) == n_graphs else jax.tree.map(lambda a: a[:n_graphs], out)

    def _max_in_degree(self, key, n_graphs: int) -> Int[Array, ""]:
        def graph_of(k):  # the key path of one() -> build_scm() -> graph()
            return self.graph(fastrand.split(fastrand.split(k, 4)[0], 6)[0])[1]

        return jax.vmap(graph_of)(jax.random.split(key, n_graphs)).sum(1).max()

    def _parent_bound(self, key, n_graphs: int) -> int | None:
        """A static in-degree bound K for this batch, or None where sparse parent lists would
        not pay: mechanisms whose per-node cost grows with d (rff) gain d / K; the graphs are
        drawn twice, which costs little. The bound is sticky and looks far ahead at first, so
        a stream of batches compiles one or two shapes."""
        if not any(isinstance(m, S.Rff) for m in self.spec.mechanism) or self.spec.uses_grn:
            return None

        def bucket(k, n: int) -> int:  # a multiple of 4: each spare row costs a projection row,
            # each step up a recompile (seconds at d = 50)
            return -(-max(int(self._in_degree(k, n)), 1) // 4) * 4

        if self._bound is None:  # first call: the largest in-degree of 4096 graphs (fewer
            # where their [d, d] adjacencies would pass 256 MB)
            ahead = max(n_graphs, min(4096, 2**26 // self.d**2))
            self._bound = bucket(jax.random.fold_in(key, 2**20), ahead)
        # Sticky: never shrinks, so a stream of batches settles on one compiled shape (the data
        # do not depend on the bound, only the cost does).
        self._bound = max(self._bound, bucket(key, n_graphs))
        return self._bound if self._bound < self.d else None

    def with_diagnostics(self, key, n_graphs: int) -> tuple[SCM, Dataset, Diagnostics]:
        """Like __call__, plus per-graph Diagnostics; never raises."""
        return self._batch(key, n_graphs, self._parent_bound(key, n_graphs))

    def __call__(self, key, n_graphs: int) -> tuple[SCM, Dataset]:
        """`n_graphs` SCMs and datasets, batched over a leading graph axis. Raises
        SimulationError when a graph produced non-finite values or a failed solve."""
        scm, data, diag = self.with_diagnostics(key, n_graphs)
        bad = np.flatnonzero(np.asarray(diag.nonfinite) > 0)
        failed = np.flatnonzero(np.asarray(diag.solver_failed))
        if len(bad) or len(failed):
            raise SimulationError(
                f"{len(bad)} graph(s) produced non-finite values (e.g. graph {bad[:5].tolist()}), "
                f"{len(failed)} failed SDE solves (e.g. {failed[:5].tolist()}); heavy-tailed noise "
                "or large coefficients down deep graphs overflow float32: narrow the spec's ranges"
            )
        return scm, data


def simulate(spec: S.ScmSpec, key, n_graphs: int, base_dir: str | Path | None = None):
    """`n_graphs` SCMs from `spec` and their datasets: (SCM, Dataset), both with a leading graph
    axis and padded to d = spec.max_nodes. Deterministic given `key`."""
    return _simulator(spec, base_dir)(key, n_graphs)


def simulate_with_diagnostics(spec: S.ScmSpec, key, n_graphs: int, base_dir=None):
    """(SCM, Dataset, Diagnostics), without raising on non-finite values."""
    return _simulator(spec, base_dir).with_diagnostics(key, n_graphs)


_CACHE: dict = {}


def _simulator(spec, base_dir) -> Simulator:
    # Specs are frozen; caching the Simulator keeps its compiled function across calls.
    files = tuple(str(g.resolved(base_dir)) for g in spec.graphs if isinstance(g, S.FromFile))
    ident = (spec.model_dump_json(), files)
    if ident not in _CACHE:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[ident] = Simulator(spec, base_dir)
    return _CACHE[ident]


