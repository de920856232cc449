"""Training data: loading and splitting clip files (dataset), the default natural-movie
dataset (default_dataset), and turning your own videos into clips (prepare_dataset, pipeline)."""
