//! Benchmarks and scenario reports for Grapevine (filled in by the benchmarks issue).
