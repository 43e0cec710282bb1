"""One-off producers (not benchmarks): the shipped model, real-data tables, sample scores."""
