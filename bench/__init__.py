"""The load benchmark of issue 4: `python -m bench` (see docs/PERFORMANCE.md)."""
