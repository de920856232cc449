"""Virtual physiology: probe any ``ProbeableModel`` with white noise, drifting
gratings, plaids and apertures, and derive the properties the paper reports
(receptive fields and Gabor fits, tuning, OSI/DSI, modulation ratio, pattern
index, surround suppression, connectivity)."""
from utils import InputError


class ProbeError(InputError):
    """A probe cannot be run as asked (a stimulus or setting outside its range, a model
    the probe does not apply to, responses that are NaN or inf); the message names the
    setting or the model and the fix."""


class ArtefactError(InputError):
    """An artefact (``.vphys.h5``) cannot be read, written or used: not one, truncated,
    missing a stage, made from another checkpoint, or its folder not writable; the
    message names the file and the command that fixes it."""


from virtual_physiology.results import VirtualPhysiology  # noqa: E402,F401  (load an artefact for an analysis)
