"""A few held-out graphs drawn (networkx layouts): the truth beside each method's prediction,
false edges and missed edges marked.

Each row is one graph, laid out once (layers of its topological order, so causes sit above
effects) and drawn the same way in every panel, so panels compare by eye. A method that predicts
only the target's parents (the model, the expert) is judged on the edges into the target; the
other true edges are drawn faint. A method that predicts a whole graph (PC, GES) is judged on
every edge; a CPDAG's undirected edge (weight 1/2 each way) is drawn without arrowheads and
counts as neither false nor missed. Edges are drawn with matplotlib patches on a bare Figure
(networkx's own drawing goes through pyplot).
"""

from __future__ import annotations

import numpy as np

from engine.evaluate.record import StageResult
from engine.report.plots import figure, png
from engine.report.stages import method_label, methods

TRUE_C, FALSE_C, MISSED_C, FAINT_C, TARGET_C = "#222222", "#d62728", "#ff7f0e", "#c8c8c8", "#ffd166"
MAX_NODES = 16  # larger graphs are unreadable drawn; the heatmaps show them


def layout(adjacency: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of a DAG's nodes: topological layers top to bottom (networkx)."""
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(len(adjacency)))
    g.add_edges_from(zip(*np.nonzero(adjacency)))
    try:
        for layer, nodes in enumerate(nx.topological_generations(g)):
            for n in nodes:
                g.nodes[n]["layer"] = -layer
        pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
    except nx.NetworkXUnfeasible:  # not a DAG (a corrupted or cyclic truth): any layout
        pos = nx.spring_layout(g, seed=0)
    return {int(k): np.asarray(v, float) for k, v in pos.items()}


def edge_status(stage: StageResult, side: str, i: int, idx: np.ndarray):
    """For graph i over its variables idx: (judged [k, k] bool, predicted weights [k, k]) where
    `judged` are the entries this method predicts."""
    s, k = stage.sides[side], len(idx)
    off = ~np.eye(k, dtype=bool)
    if s.graph_pred is not None:
        return off, np.asarray(s.graph_pred[i], float)[np.ix_(idx, idx)]
    judged, pred = np.zeros((k, k), bool), np.zeros((k, k))
    col = int(np.flatnonzero(idx == stage.target[i])[0])
    judged[:, col] = off[:, col]
    pred[:, col] = np.nan_to_num(np.asarray(s.pred[i], float)[idx])
    return judged, pred


def _bend(pos: dict, a: int, b: int) -> float:
    """An edge's curvature: slight, or strong when a third node sits on the straight line
    (a long edge of a chain would hide behind the short ones)."""
    p, q = pos[a], pos[b]
    d = q - p
    length = float(np.hypot(*d)) or 1.0
    for n, r in pos.items():
        if n in (a, b):
            continue
        t = float(np.dot(r - p, d)) / length ** 2
        v = r - p
        if 0 < t < 1 and abs(float(d[0] * v[1] - d[1] * v[0])) / length < 0.04:
            return 0.35
    return 0.08


def _arrow(ax, p, q, colour, style="-", lw=1.4, head=True, alpha=1.0, rad=0.08):
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>" if head else "-", mutation_scale=11,
                                 color=colour, lw=lw, ls=style, alpha=alpha, shrinkA=9, shrinkB=9,
                                 connectionstyle=f"arc3,rad={rad}", zorder=1))


def _panel(ax, pos, truth, target, judged=None, pred=None) -> tuple[int, int]:
    """Draw one panel; returns (false, missed) edges among the judged ones."""
    k = len(truth)
    n_false = n_missed = 0
    for a in range(k):
        for b in range(k):
            if a == b:
                continue
            t = bool(truth[a, b])
            if not (t or (judged is not None and judged[a, b] and pred[a, b] > 0.25)):
                continue  # nothing to draw
            edge = dict(rad=_bend(pos, a, b))
            if judged is None:  # the truth itself
                if t:
                    _arrow(ax, pos[a], pos[b], TRUE_C, **edge)
                continue
            if not judged[a, b]:
                if t:
                    _arrow(ax, pos[a], pos[b], FAINT_C, lw=1.0, **edge)
                continue
            w = pred[a, b]
            half = abs(w - 0.5) < 1e-9
            if half:
                if a < b or not judged[b, a] or abs(pred[b, a] - 0.5) > 1e-9:
                    _arrow(ax, pos[a], pos[b], "#7f7f7f", style=":", head=False, **edge)
            elif w > 0.5 and t:
                _arrow(ax, pos[a], pos[b], TRUE_C, **edge)
            elif w > 0.5:
                n_false += 1
                _arrow(ax, pos[a], pos[b], FALSE_C, lw=1.8, **edge)
            elif t:
                n_missed += 1
                _arrow(ax, pos[a], pos[b], MISSED_C, style="--", lw=1.6, **edge)
    xy = np.array([pos[n] for n in range(k)])
    colours = [TARGET_C if n == target else "white" for n in range(k)]
    ax.scatter(xy[:, 0], xy[:, 1], s=260, c=colours, edgecolors="#444444", linewidths=1.0, zorder=2)
    for n in range(k):
        ax.text(*pos[n], str(n), ha="center", va="center", fontsize=7, zorder=3)
    pad = 0.25
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return n_false, n_missed


def drawn_graphs(stage: StageResult, n: int = 3, max_methods: int = 4) -> bytes:
    """The first `n` graphs (of at most MAX_NODES variables; those whose target has parents
    first) that every drawn method ran on:
    truth, then each method's prediction with false edges (red) and missed ones (orange,
    dashed) marked."""
    from matplotlib.lines import Line2D

    names = [s for s in methods(stage) if s != "random"][:max_methods]
    fits = [i for i in range(stage.n_graphs)
            if stage.var_mask[i].sum() <= MAX_NODES and all(stage.sides[s].ran[i] for s in names)]
    # graphs whose target has parents first: there is something to find, or to miss
    graphs = sorted(fits, key=lambda i: not stage.truth[i].any())[:n]
    if not names or not graphs:
        raise ValueError("no small graph that every method ran on")
    fig = figure(2.6 * (len(names) + 1), 2.5 * len(graphs) + 0.6)
    axes = fig.subplots(len(graphs), len(names) + 1, squeeze=False)
    for r, i in enumerate(graphs):
        idx = np.flatnonzero(stage.var_mask[i])
        truth = np.asarray(stage.adjacency[i], bool)[np.ix_(idx, idx)]
        target = int(np.flatnonzero(idx == stage.target[i])[0])
        pos = layout(truth)
        _panel(axes[r][0], pos, truth, target)
        axes[r][0].set_title(f"truth (graph {i}, {len(idx)} variables, {int(truth.sum())} edges)", fontsize=8)
        for c, side in enumerate(names, 1):
            judged, pred = edge_status(stage, side, i, idx)
            n_false, n_missed = _panel(axes[r][c], pos, truth, target, judged, pred)
            scope = "whole graph" if stage.sides[side].graph_pred is not None else "target's parents"
            axes[r][c].set_title(f"{method_label(side)} ({scope}): {n_false} false, {n_missed} missed",
                                 fontsize=8, color=FALSE_C if n_false or n_missed else "black")
    handles = [Line2D([], [], color=TRUE_C, lw=1.4, label="true edge (found)"),
               Line2D([], [], color=FALSE_C, lw=1.8, label="false edge"),
               Line2D([], [], color=MISSED_C, lw=1.6, ls="--", label="missed edge"),
               Line2D([], [], color="#7f7f7f", lw=1.2, ls=":", label="undirected (CPDAG)"),
               Line2D([], [], color=FAINT_C, lw=1.0, label="true edge the method does not predict"),
               Line2D([], [], marker="o", ls="", markerfacecolor=TARGET_C, markeredgecolor="#444444",
                      ms=9, label="target")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=7, frameon=False)
    fig.suptitle(f"Stage {stage.name}: truth beside each method's predicted edges on "
                 f"{len(graphs)} graphs", fontsize=9)
    return png(fig)
