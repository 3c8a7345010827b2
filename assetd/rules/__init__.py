"""Promotion rules: matching and evaluation as pure functions (no I/O). Arrives with issue 3."""
