"""Scale-out (rows with ``n_gpus``): time vs S on 1 and more GPUs, and the speed-up."""
from __future__ import annotations

from .style import PATH_COLORS, legend_outside, log2_x, panels

NGPU_STYLE = {1: dict(ls="--", marker="s"), 2: dict(ls="-", marker="o")}


def scale_out_figure(tables: dict, anchors=None):
    """Left: time vs S per path, one line per GPU count (×: out of memory); right: the time on one
    GPU over the time on n GPUs at each S both have, with the goals from the anchors."""
    df = tables.get("scale_out")
    if df is None or df.empty or "n_gpus" not in df:
        return None
    d = df[df["status"].isin(["ok", "oom"])]
    if d.empty or d["n_gpus"].max() <= 1:
        return None
    fig, axes = panels(2, width=5.6)
    ax_t, ax_x = axes[0]
    ok = d[(d["status"] == "ok") & d["time_s"].notna()]
    for path in sorted(d["path"].unique()):
        g = ok[ok["path"] == path]
        for n, gn in g.groupby("n_gpus"):
            gn = gn.sort_values("S")
            label = f"{path}, {int(n)} GPU" + ("s" if n > 1 else "")
            ax_t.plot(gn["S"], gn["time_s"], color=PATH_COLORS.get(path), ms=4, label=label,
                      **NGPU_STYLE.get(int(n), dict(ls=":", marker="^")))
        one = g[g["n_gpus"] == 1].groupby("S")["time_s"].min()
        for n in sorted(set(g["n_gpus"]) - {1}):
            many = g[g["n_gpus"] == n].groupby("S")["time_s"].min()
            common = sorted(set(one.index) & set(many.index))
            if common:
                ax_x.plot(common, (one[common] / many[common]).values, "o-", color=PATH_COLORS.get(path),
                          label=f"{path}: 1 → {int(n)} GPUs")
    oom = d[d["status"] == "oom"]
    if len(oom) and ok["time_s"].notna().any():
        ax_t.plot(oom["S"], [ok["time_s"].max() * 2] * len(oom), "kx", ms=8, mew=2, label="× out of memory")
    if anchors is not None:
        for key, path in (("min_stream_speedup", "stream"), ("min_csa_speedup", "csa")):
            v = anchors.get(f"goals.scale_out.{key}")
            if v is not None:
                ax_x.axhline(float(v), color=PATH_COLORS.get(path), ls=":", lw=1, label=f"{path} goal ≥ {float(v):g}×")
    ax_t.set_yscale("log")
    log2_x(ax_t, d["S"])
    ax_t.set_ylabel("time per call (s)")
    ax_t.grid(True, which="both", alpha=0.3)
    log2_x(ax_x, d["S"])
    ax_x.set_ylabel("speed-up over one GPU (×)")
    top = int(d["n_gpus"].max())
    ax_x.axhline(top, color="k", lw=0.8, label=f"ideal ({top}×)")
    ax_x.set_ylim(0, top * 1.15)
    ax_x.grid(True, alpha=0.3)
    fig.suptitle("Scale-out over GPUs of one host")
    legend_outside(fig, [ax_t, ax_x], ncol=3)
    return fig
