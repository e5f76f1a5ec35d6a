"""lapse benchmarks: each prints its figures as ratios against a same-run baseline."""
