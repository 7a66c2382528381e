#!/usr/bin/env python3
"""tools/plot_metrics.py: plots an rft run's metrics.jsonl to a PNG.

Panels: reward (train), valid_reward_mean, per-grader means
(rewards/<g>/mean and valid/<g>/mean), kl, completions/mean_length and
entropy; panels whose metrics the run did not log are left out (an SFT run
shows loss / valid_loss instead). Per-step series are drawn faint with a
moving average on top (--smooth N). Needs matplotlib (pip install matplotlib).

  tools/plot_metrics.py out/quickstart/metrics.jsonl [-o out/quickstart/metrics.png]
  tools/plot_metrics.py RUN_A/metrics.jsonl RUN_B/metrics.jsonl -o cmp.png   # overlay runs
"""
import argparse, json, math, os, sys


def load(path):
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{i}: not JSON ({e.msg})")
    return rows


def series(rows, key):
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and "step" in r:
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def graders(rows):
    names = []
    for r in rows:
        for k in r:
            for pre in ("rewards/", "valid/"):
                if k.startswith(pre) and k.endswith("/mean") and k.count("/") == 2:
                    g = k[len(pre):-len("/mean")]
                    if g not in names and g != "completions":
                        names.append(g)
    return names


def main():
    ap = argparse.ArgumentParser(description="plot rft metrics.jsonl to PNG")
    ap.add_argument("metrics", nargs="+", help="metrics.jsonl of one or more runs")
    ap.add_argument("-o", "--out", help="PNG path (default: next to the first metrics file)")
    ap.add_argument("--title", help="figure title (default: the run directories)")
    ap.add_argument("--smooth", type=int, default=10, help="moving-average window for per-step series (0 = off)")
    a = ap.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(os.path.basename(os.path.dirname(os.path.abspath(p))) or p, load(p)) for p in a.metrics]
    gnames = []
    for _, rows in runs:
        gnames += [g for g in graders(rows) if g not in gnames]
    # (title, [(key, label-suffix, style)])
    panels = [
        ("reward (train)", [("reward", "", "-")]),
        ("valid_reward_mean", [("valid_reward_mean", "", "o-")]),
    ]
    for g in gnames:
        panels.append((f"grader {g}: mean", [(f"rewards/{g}/mean", " train", "-"), (f"valid/{g}/mean", " valid", "o-")]))
    panels += [
        ("kl", [("kl", "", "-")]),
        ("completions/mean_length", [("completions/mean_length", " train", "-"),
                                     ("valid/completions/mean_length", " valid", "o-")]),
        ("entropy", [("entropy", "", "-")]),
        ("loss", [("loss", " train", "-"), ("valid_loss", " valid", "o-")]),
    ]
    panels = [p for p in panels if any(series(rows, k)[0] for _, rows in runs for k, _, _ in p[1])]
    if not panels:
        sys.exit(f"{a.metrics[0]}: no plottable metrics")
    ncol = 2 if len(panels) > 1 else 1
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 3.2 * nrow), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        for ri, (rname, rows) in enumerate(runs):
            color = f"C{ri}"
            for ki, (k, suffix, style) in enumerate(keys):
                xs, ys = series(rows, k)
                if not xs:
                    continue
                label = (rname if len(runs) > 1 else "") + suffix
                if ki > 0 and len(runs) > 1:
                    style = style.replace("-", "--")
                if "o" not in style and len(ys) > 4 * a.smooth > 0:
                    # per-step series: faint raw values, and a moving average
                    ax.plot(xs, ys, style, color=color, alpha=0.25, linewidth=0.8)
                    w = a.smooth
                    ma = [sum(ys[max(0, i - w + 1):i + 1]) / (i + 1 - max(0, i - w + 1)) for i in range(len(ys))]
                    ax.plot(xs, ma, style, color=color, label=((label.strip() + " ") if label.strip() else "")
                            + f"(mean of {w})")
                    continue
                ax.plot(xs, ys, style, color=color, alpha=1.0 if ki == 0 or len(runs) > 1 else 0.6,
                        markersize=3, label=label.strip() or None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(a.title or ", ".join(r for r, _ in runs), fontsize=11)
    fig.tight_layout()
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.metrics[0])), "metrics.png")
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    sys.exit(main())
