"""Benchmarks: each stage of ours against a reference run side by side on the same input (see BENCHMARKS.md)."""
