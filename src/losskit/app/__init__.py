"""The ``losskit`` command line and what only it uses (pandas, scikit-learn, matplotlib, rich).

The library never imports this package; it loads its dependencies when a command runs.
"""
