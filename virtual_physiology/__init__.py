"""Virtual physiology: probe any ``ProbeableModel`` with white noise, drifting
gratings, plaids and apertures, and derive the properties the paper reports
(receptive fields and Gabor fits, tuning, OSI/DSI, modulation ratio, pattern
index, surround suppression, connectivity)."""

from virtual_physiology.results import VirtualPhysiology  # noqa: E402,F401  (load an artefact for an analysis)
