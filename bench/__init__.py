"""Benchmarks (DESIGN §11): each prints one JSON object last."""
