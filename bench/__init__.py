"""The project's benchmarks. Each script runs on its own (`python bench/NAME.py`, bench/README.md);
`python -m bench` runs them all and prints one table (bench/suite.py)."""
