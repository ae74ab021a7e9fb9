"""One-off studies whose figures BENCHMARKS.md still quotes (not part of `python -m bench`).

Run each from the repository root as a script, `python bench/experiments/NAME.py ...`: the
command that reproduces a figure is given beside it in BENCHMARKS.md.
"""
