"""Pictures of a generated design (matplotlib, imported only when one is drawn).

* :func:`block_diagram`: the dataflow graph as blocks and arrows, the model input on the left,
  every layer a block (op, engine, fold, lanes, expected cycles), forks and joins as they are;
* :func:`budget_plot`: per layer, expected cycles against the cycle budget and lanes against
  the lane budget.

The format follows the file's suffix: ``.svg`` or ``.png``.
"""

from pathlib import Path

from .gen.errors import UsageError

__all__ = ["FORMATS", "block_diagram", "budget_plot", "check_figure_path"]

FORMATS = (".svg", ".png")


def check_figure_path(path, flag):
    """``path`` as a Path if its suffix is one of :data:`FORMATS`, else a UsageError."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"{flag} {str(path)!r}: expected a file ending in .svg or .png")
    if path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a directory")
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _columns(model):
    """Column of every tensor: the input 0, a layer one more than its deepest input."""
    col = {"input": 0}
    for layer in model.layers:
        col[layer.name] = 1 + max(col[src] for src in layer.inputs)
    return col


def layout(model):
    """``{tensor: (column, row)}``: columns by depth, rows in layer order within a column."""
    col, rows, pos = _columns(model), {}, {}
    for name in ["input"] + [layer.name for layer in model.layers]:
        c = col[name]
        pos[name] = (c, rows.get(c, 0))
        rows[c] = rows.get(c, 0) + 1
    return pos


def _label(entry, layer):
    fold = f"{entry.get('pe', entry['out_beat'])}x{entry.get('simd', entry['in_beat'])}"
    shape = "x".join(str(d) for d in layer.out_shape)
    return (f"{layer.name}\n{layer.op.value} -> {shape}\n{entry['engine']} {fold}, "
            f"{entry['lanes']} lanes\n{entry['expected_cycles']} cycles")


def block_diagram(model, manifest, path):
    """Draw the dataflow graph of ``model`` as generated (``manifest``) to ``path``."""
    plt = _pyplot()
    pos = layout(model)
    entries = {e["name"]: e for e in manifest["layers"]}
    width = max(c for c, _ in pos.values()) + 1
    height = max(r for _, r in pos.values()) + 1
    fig, ax = plt.subplots(figsize=(2.6 * width + 1, 1.7 * height + 1))
    ax.set_axis_off()

    def xy(name):
        c, r = pos[name]
        return 2.6 * c, -1.7 * r

    shape = "x".join(str(d) for d in model.input_shape)
    boxes = {"input": f"input\n{model.input_dtype} x {shape}"}
    boxes.update({layer.name: _label(entries[layer.name], layer) for layer in model.layers})
    last = model.layers[-1].name
    for name, text in boxes.items():
        colour = "#dde8f5" if name == "input" else "#f5e6c8" if name == last else "#e8f2e1"
        ax.text(*xy(name), text, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "#555"})
    for layer in model.layers:
        for src in dict.fromkeys(layer.inputs):
            (x0, y0), (x1, y1) = xy(src), xy(layer.name)
            # an edge over other columns of its row (a skip connection) bends above them
            skip = pos[layer.name][0] - pos[src][0] > 1 and y0 == y1
            ax.annotate("", xy=(x1 - 1.0 * (not skip), y1 + 0.45 * skip),
                        xytext=(x0 + 1.0 * (not skip), y0 + 0.45 * skip),
                        arrowprops={"arrowstyle": "->", "color": "#333",
                                    "connectionstyle": f"arc3,rad={-0.3 if skip else 0.0}"})
    ax.set_xlim(-1.3, 2.6 * (width - 1) + 1.3)
    ax.set_ylim(-1.7 * (height - 1) - 0.9, 1.8)   # room above for skip connections
    ax.set_title(f"{manifest['name']}: {manifest['lanes']} lanes, "
                 f"{manifest['expected_cycles_per_inference']} cycles per inference")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def budget_plot(manifest, path):
    """Per layer: expected cycles against the budget (``target_cycles``, else the slowest
    layer, which sets the rate) and lanes against ``max_lanes``."""
    plt = _pyplot()
    layers = manifest["layers"]
    names = [e["name"] for e in layers]
    options = manifest.get("options", {})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(5, 0.8 * len(names) + 2), 6),
                                      sharex=True)
    top.bar(names, [e["expected_cycles"] for e in layers], color="#4c72b0")
    budget = options.get("target_cycles")
    line = budget or manifest["expected_cycles_per_inference"]
    top.axhline(line, color="#c44e52", linestyle="--",
                label=(f"target {budget} cycles" if budget else
                       f"slowest layer: {line} cycles per inference"))
    top.set_ylabel("expected cycles")
    top.legend(fontsize=8)
    bottom.bar(names, [e["lanes"] for e in layers], color="#55a868")
    lanes = options.get("max_lanes")
    bottom.set_ylabel("lanes")
    bottom.set_title(f"{manifest['lanes']} lanes in all"
                     + (f" of a budget of {lanes}" if lanes else ""), fontsize=9)
    bottom.tick_params(axis="x", labelrotation=45)
    top.set_title(f"{manifest['name']}: cycles and lanes per layer")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
