"""Helpers for tests and benchmarks: tiny random models saved in the official file formats."""
