"""Side-by-side benchmarks against the peer libraries (run: ``make bench``)."""
