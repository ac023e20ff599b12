"""Analysis of captured runs: MI peaks and statistics, thinking tokens, the run-dir pipeline, comparisons."""
