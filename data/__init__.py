"""Training data: loading and splitting clip files (dataset), the default natural-movie
dataset (default_dataset), and turning your own videos into clips (prepare_dataset, pipeline)."""
from utils import InputError


class DatasetError(InputError):
    """Clips or videos that cannot be used as training data (a missing, malformed or
    non-finite clips file, an undecodable video, an unknown dataset setting); the
    message names the file or setting and the fix."""
