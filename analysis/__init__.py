"""Analyses that compare a trained model with the literature: statistics helpers,
literature reference data, a one-page report and the figure notebooks."""
from utils import InputError


class AnalysisError(InputError):
    """What an analysis was given cannot be analysed (a reference table that cannot be
    read, a model the analysis does not apply to, an output folder that cannot be
    written); the message names it and the fix."""
