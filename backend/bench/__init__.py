"""Benchmarks behind ``mono2mesh bench ...``: commands that print JSON, never timed tests."""
