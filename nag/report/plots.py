"""Pictures of generated architectures: DAG grids and true-metric histograms.

Figures are built on :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state), so
callbacks can draw on any thread or backend and hand them to TensorBoard's ``add_figure``.
Layouts come from networkx: each node sits in the column of its longest path from the
input, so every DAG reads left to right.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import networkx as nx
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from nag.spaces.base import Arch, SearchSpace


def arch_graph(space: SearchSpace, arch: Arch) -> nx.DiGraph:
    """``arch`` as a networkx DAG: node ``i`` has attribute ``op`` and ``layer``, its column
    in a left-to-right drawing (its topological generation)."""
    labels, adjacency = space.to_graph(arch)
    graph = nx.DiGraph()
    graph.add_nodes_from((i, {"op": op}) for i, op in enumerate(labels))
    graph.add_edges_from(zip(*np.nonzero(adjacency)))
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for node in nodes:
            graph.nodes[node]["layer"] = layer
    return graph


def draw_architectures(
    space: SearchSpace, archs: Sequence[Arch], titles: Sequence[str] | None = None, ncols: int = 4
) -> Figure:
    """A grid with one panel per architecture; nodes are labelled with their op and coloured
    by it, the same colour for the same op in every panel."""
    if not archs:
        raise ValueError("draw_architectures: no architectures to draw")
    graphs = [arch_graph(space, a) for a in archs]
    columns = max(1 + max(nx.get_node_attributes(g, "layer").values()) for g in graphs)
    rows = max(Counter(nx.get_node_attributes(g, "layer").values()).most_common(1)[0][1] for g in graphs)
    ncols = min(ncols, len(archs))
    nrows = math.ceil(len(archs) / ncols)
    # about an inch per column of the DAG, so op names (~0.5 inch at 6 pt) do not overlap
    fig = Figure(figsize=((0.9 * columns + 0.4) * ncols, (0.5 * rows + 1.0) * nrows), layout="constrained")
    palette = colormaps["tab20"]
    colours = {op: palette(i % palette.N) for i, op in enumerate(space.ops)}
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(archs):
            continue
        graph = graphs[i]
        pos = nx.multipartite_layout(graph, subset_key="layer")
        nx.draw_networkx(
            graph,
            pos,
            ax=ax,
            labels=nx.get_node_attributes(graph, "op"),
            font_size=6,
            node_size=260,
            node_color=[colours.get(graph.nodes[n]["op"], "lightgrey") for n in graph],
            edge_color="grey",
            arrowsize=8,
        )
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def metric_histogram(generated: Sequence[float], reference: Sequence[float], metric: str, bins: int = 30) -> Figure:
    """Density of the generated architectures' true ``metric`` over the benchmark's whole
    distribution (same bins): mass shifted towards the good end is what guidance buys."""
    reference = np.asarray(reference, dtype=np.float64)
    reference = reference[~np.isnan(reference)]
    generated = np.asarray(generated, dtype=np.float64)
    generated = generated[~np.isnan(generated)]
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    edges = np.histogram_bin_edges(np.concatenate([reference, generated]), bins=bins)
    ax.hist(reference, bins=edges, density=True, alpha=0.5, color="grey", label=f"benchmark (n={reference.size})")
    if generated.size:
        ax.hist(
            generated, bins=edges, density=True, alpha=0.6, color="tab:blue", label=f"generated (n={generated.size})"
        )
    ax.set_xlabel(metric)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return fig
