"""Training: the step and its state, the config and presets, the run folder, the
one training loop (``loop.run_epochs``) that a single run and a batched sweep share,
the batched sweep and the CUDA graph. ``train.py`` is the command that runs it.

Sits above ``models``, ``losses`` and ``data`` and below the probes: nothing here
imports ``virtual_physiology`` or ``analysis`` (the receptive-field monitor arrives
as a callable from ``train.py``).
"""
from utils import InputError


class TrainingSetupError(InputError):
    """A run cannot be set up as asked (a setting out of range, data or a model that do
    not fit the settings, a run folder that cannot be written or is locked); the message
    names the flag or the folder and the fix."""


class ResumeError(TrainingSetupError):
    """A run cannot continue from what it was pointed at (no state file, a damaged one,
    a config.json or dataset that differs from the run's)."""
