"""Benchmarks, each run from the repository root as ``python -m bench.NAME`` (bench/README.md
lists them). A benchmark imports only apex_stream and :mod:`bench.harness`, never another
benchmark nor anything of tests/."""
