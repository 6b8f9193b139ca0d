"""Tools beside the runner: the parameter audit, the benchmark, the demo, the study's search."""
