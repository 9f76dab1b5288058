"""Causal Bayesian optimisation: the episode loop with pluggable surrogates and acquisitions."""
