"""Evaluation harness for r3mem: metrics, benchmarks and reporting."""
