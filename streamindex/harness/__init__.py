"""The reproduction harness (DESIGN.md §3): cell specs, isolated measurement, result tables,
figures and the claims report. One concern per module:

config (schema + validation) · cellspec · sweep (grids → cells) · runner (isolation, resume,
budget) · cell_worker (inside a cell's process) · measure (timing, memory, matmul rate) ·
skip_rules · results (tables) · provenance · tables / figures / claims / report (output).
"""
