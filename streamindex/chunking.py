"""Query-row chunk plans under a byte budget, shared by the memory-bounded paths."""
from __future__ import annotations

from typing import Iterator

from .problem import IndexerProblem


def row_chunks(p: IndexerProblem, *, bytes_per_col: int, budget: int, multiple: int = 1,
               max_rows: int | None = None) -> Iterator[tuple[int, int, int]]:
    """Yield ``(s0, s1, n_cols)``: consecutive query chunks ``[s0, s1)`` whose scratch
    ``B · (s1 - s0) · n_cols · bytes_per_col`` fits ``budget`` (at least ``multiple`` rows),
    where ``n_cols`` = keys visible from the chunk's last query. Chunks whose queries see no
    key come out with ``n_cols = 0``. Early (causal) chunks see fewer keys, so they get more rows."""
    S = p.S
    per_row = max(1, p.B * bytes_per_col)
    s0 = 0
    while s0 < S:
        cap = S - s0 if max_rows is None else min(S - s0, max_rows)
        rows = cap
        # Largest row count (a multiple of ``multiple``, or the rest of S) within the budget.
        while rows > multiple and rows * max(1, p.n_visible(s0 + rows - 1)) * per_row > budget:
            rows = max(multiple, (rows // 2) // multiple * multiple)
        if rows < cap:  # grow back linearly in steps of ``multiple`` once halving overshot
            while rows + multiple <= cap and (rows + multiple) * max(1, p.n_visible(s0 + rows + multiple - 1)) * per_row <= budget:
                rows += multiple
        s1 = s0 + rows
        yield s0, s1, p.n_visible(s1 - 1)
        s0 = s1
