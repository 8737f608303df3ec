# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # StreamIndex figures
#
# Regenerates every figure of the report from the recorded tables under `results/<hardware>/`
# (and the scale-out rows of `results/<hardware>x<N>/`); nothing is measured here. Set
# `STREAMINDEX_RESULTS` (default: the repository's `results/`) and `STREAMINDEX_HARDWARE`
# (default `h200`) to point it elsewhere; figures are written to `STREAMINDEX_FIGURES`
# (default `<results>/<hardware>/figures`). The claims at the end are the report's: each from
# the rows of one commit, references and goals from `conf/anchors.yaml`.

# %%
import os
import sys
from pathlib import Path

import pandas as pd

ROOT = Path.cwd().resolve()
while not (ROOT / "streamindex").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))

from streamindex.harness.claims import all_claims, load_anchors  # noqa: E402
from streamindex.harness.figures import FIGURES as FIGURE_NAMES  # noqa: E402
from streamindex.harness.figures import draw_all  # noqa: E402
from streamindex.harness.report import load_report_tables  # noqa: E402

RESULTS = Path(os.environ.get("STREAMINDEX_RESULTS", ROOT / "results"))
HARDWARE = os.environ.get("STREAMINDEX_HARDWARE", "h200")
FIGURES = Path(os.environ.get("STREAMINDEX_FIGURES", RESULTS / HARDWARE / "figures"))
anchors = load_anchors()
allrows, tables = load_report_tables(RESULTS, HARDWARE)
print(f"{RESULTS / HARDWARE}: " + (", ".join(f"{k} ({len(v)} rows)" for k, v in tables.items()) or "no tables"))

# %% [markdown]
# ## Rows by status

# %%
pd.DataFrame({k: v["status"].value_counts() for k, v in tables.items()}).fillna(0).astype(int)

# %% [markdown]
# ## Figures
#
# Every figure of the report whose rows exist (a figure without rows is listed as skipped).

# %%
from IPython.display import Image, display  # noqa: E402

written = draw_all(tables, FIGURES, anchors)
for name in FIGURE_NAMES:
    path = FIGURES / name
    if path in written:
        print(name)
        display(Image(filename=str(path)))
    else:
        print(f"{name}: skipped (no rows for it)")

# %% [markdown]
# ## Claims

# %%
pd.DataFrame([c.__dict__ for c in all_claims(allrows, anchors)])
