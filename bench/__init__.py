"""dbosify's benchmarks with their targets (DESIGN §4.3, §10): see bench/README.md."""
