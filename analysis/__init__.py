"""Analyses that compare a trained model with the literature: statistics helpers,
literature reference data, a one-page report and the figure notebooks."""
