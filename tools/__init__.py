"""tools: the command-line programs (netio-run, netio-report, load generator, benchmarks)."""
