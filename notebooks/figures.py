# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # StreamIndex figures
#
# Regenerates every figure of the report from the recorded tables under `results/<hardware>/`
# (nothing is measured here). Set `STREAMINDEX_RESULTS` (default: the repository's `results/`)
# and `STREAMINDEX_HARDWARE` (default `h200`) to point it elsewhere; figures are written to
# `STREAMINDEX_FIGURES` (default `<results>/<hardware>/figures`).

# %%
import os
import sys
from pathlib import Path

import pandas as pd

ROOT = Path.cwd().resolve()
while not (ROOT / "streamindex").is_dir() and ROOT != ROOT.parent:
    ROOT = ROOT.parent
sys.path.insert(0, str(ROOT))

from streamindex.harness.claims import all_claims  # noqa: E402
from streamindex.harness.figures import draw_all  # noqa: E402
from streamindex.harness.results import load_results  # noqa: E402

RESULTS = Path(os.environ.get("STREAMINDEX_RESULTS", ROOT / "results"))
HARDWARE = os.environ.get("STREAMINDEX_HARDWARE", "h200")
FIGURES = Path(os.environ.get("STREAMINDEX_FIGURES", RESULTS / HARDWARE / "figures"))
tables = {k: v for k, v in load_results(RESULTS, HARDWARE).items() if len(v)}
print(f"{RESULTS / HARDWARE}: " + (", ".join(f"{k} ({len(v)} rows)" for k, v in tables.items()) or "no tables"))

# %% [markdown]
# ## Rows by status

# %%
pd.DataFrame({k: v["status"].value_counts() for k, v in tables.items()}).fillna(0).astype(int)

# %% [markdown]
# ## Figures

# %%
from IPython.display import Image, display  # noqa: E402

written = draw_all(tables, FIGURES)
for path in written:
    print(path.name)
    display(Image(filename=str(path)))

# %% [markdown]
# ## Published claims

# %%
pd.DataFrame([c.__dict__ for c in all_claims(tables)])
