"""Benchmarks: ``python -m bench NAME [args]`` runs ``bench/bench_NAME.py``'s ``main(argv)``."""
