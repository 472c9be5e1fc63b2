"""Development tools: the real servers tests, examples and benchmarks run against."""
