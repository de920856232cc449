"""The stimulus layout shared by the neural and the model side.

Both movies are cut into ``chunk_frames``-frame chunks (movie one first, then
movie three, each in frame order) and every chunk is averaged in
``bin_frames``-frame bins. With the paper's numbers (900 + 3600 frames, chunks
of 300, bins of 5) that gives 15 chunks and 900 bins, as the original. The numbers
are parameters so tests can use tiny movies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MovieSpec:
    """One movie: its name in the NWB file (``<name>_presentations``), its
    frame count and how many times a session shows it."""

    name: str
    n_frames: int
    n_repeats: int


MOVIES = (MovieSpec("natural_movie_one", 900, 20), MovieSpec("natural_movie_three", 3600, 10))
CHUNK_FRAMES = 300
BIN_FRAMES = 5


@dataclass(frozen=True)
class StimulusLayout:
    movies: tuple[MovieSpec, ...] = MOVIES
    chunk_frames: int = CHUNK_FRAMES
    bin_frames: int = BIN_FRAMES

    def __post_init__(self):
        for movie in self.movies:
            if movie.n_frames % self.chunk_frames:
                raise ValueError(
                    f"{movie.name} has {movie.n_frames} frames, not a multiple of the chunk length "
                    f"{self.chunk_frames}: pick a chunk length that divides every movie")
        if self.chunk_frames % self.bin_frames:
            raise ValueError(
                f"chunk length {self.chunk_frames} is not a multiple of the bin length "
                f"{self.bin_frames}: pick a bin length that divides the chunk length")

    @property
    def n_frames(self) -> int:
        return sum(m.n_frames for m in self.movies)

    @property
    def n_chunks(self) -> int:
        return self.n_frames // self.chunk_frames

    @property
    def n_bins(self) -> int:
        return self.n_frames // self.bin_frames

    def to_dict(self) -> dict:
        return {"movies": [vars(m) for m in self.movies],
                "chunk_frames": self.chunk_frames, "bin_frames": self.bin_frames}


def bin_mean(x: np.ndarray, bin_frames: int, axis: int = -1) -> np.ndarray:
    """Mean over consecutive, non-overlapping ``bin_frames``-long windows of ``axis``.

    (..., T, ...) -> (..., T // bin_frames, ...). T must be a multiple of
    ``bin_frames`` (the layout guarantees it); bins never straddle chunks
    because chunks are a multiple of the bin length.
    """
    x = np.moveaxis(np.asarray(x), axis, -1)
    if x.shape[-1] % bin_frames:
        raise ValueError(f"{x.shape[-1]} frames do not split into bins of {bin_frames}")
    binned = x.reshape(*x.shape[:-1], -1, bin_frames).mean(axis=-1)
    return np.moveaxis(binned, -1, axis)
