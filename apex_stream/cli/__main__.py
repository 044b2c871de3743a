"""`python -m apex_stream.cli`: how the demo, the tests and the benchmarks start services."""

from . import main

main()
