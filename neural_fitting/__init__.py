"""Model-versus-brain comparison on the Allen Visual Coding Neuropixels data.

Pipeline (README.md in this folder): download or bring session NWB files and
the movie templates -> ``process_sessions`` (spike counts, noise-ratio filter,
900 time bins per session) -> ``model_responses`` (per-group model and VGG19
responses to the same movie chunks) -> ``rsa`` / ``RSA.ipynb`` (RSMs, noise
ceilings, normalised similarity, statistics and the figure).

Errors: library functions raise ValueError (``RecordingError`` where the
recordings or their download cannot be used, ConnectionError for a failed
download) naming the problem and its fix. The commands (download_allen,
download_dandi, process_sessions, model_responses) build their flags from an
options dataclass (``utils.flag``) and print those errors as one line with
exit status 2 (``utils.user_errors_from``, ``utils.run_cli``).
"""
from utils import InputError


class RecordingError(InputError):
    """Recordings, movie templates or downloads of them that cannot be used (a table
    that cannot be counted from, a package or network that is missing); the message
    names the file or the step and the fix."""
