"""Training: the step and its state, the config and presets, the run folder, the
one training loop (``loop.run_epochs``) that a single run and a batched sweep share,
the batched sweep and the CUDA graph. ``train.py`` is the command that runs it.

Sits above ``models``, ``losses`` and ``data`` and below the probes: nothing here
imports ``virtual_physiology`` or ``analysis`` (the receptive-field monitor arrives
as a callable from ``train.py``).
"""
