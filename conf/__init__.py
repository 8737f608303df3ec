"""The harness's Hydra configs. In a checkout Hydra reads this folder directly; an installed
wheel ships it as the package ``streamindex.harness.conf`` (this file makes it importable, so that
Hydra finds it as ``pkg://streamindex.harness.conf`` on every node of a cluster)."""
