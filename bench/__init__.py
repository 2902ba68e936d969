"""Benchmarks that print figures (run each as a script: ``python bench/NAME.py``); tests import the
measuring functions they share from here (``bench.detection``)."""
