"""Benchmarks of posoutbox at retail scale, each beside the database's own figure."""
