"""Evaluation: per-class metrics with the seed's definitions, a run's metrics file, the aggregation over runs, and
the paper's published tables to compare with."""
