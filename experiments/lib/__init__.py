"""Benchmark, ablation, report, shipping and precision machinery shared by the experiment scripts.

Not part of the installed library: it imports matplotlib and cv2 (the `bench` extra), and
it is imported as `experiments.lib.*` from the repository root (scripts and tests).
"""
