"""asv suites of fastnn; run asv from the benchmarks/ directory."""
