"""Which Allen sessions to use, and the data-folder layout every download path shares.

Layout of a data folder (allensdk, DANDI or your own files):

    <data>/sessions/*.nwb              one NWB file per session (any name)
    <data>/movies/natural_movie_one.npy, natural_movie_three.npy   templates (frames, H, W)
    <data>/sessions.csv                the Allen session table rows that were selected
    <data>/channels.csv                Allen channel areas (optional; see process_sessions --channels-csv)
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

SESSION_TYPE = "brain_observatory_1.1"
GENOTYPE = "wt/wt"
VISUAL_AREAS = ("VISp", "VISl", "VISrl", "VISal", "VISpm", "VISam")
MOVIE_TEMPLATES = {"natural_movie_one": 1, "natural_movie_three": 3}  # name -> allensdk template number
DEFAULT_AREAS = ("VISp", "VISl", "VISrl")  # the paper's three areas


def check_areas(areas: list[str]) -> list[str]:
    """The areas as a list; ValueError if there are none or one is not a visual area."""
    if not areas:
        raise ValueError(f"no areas given: name some of {' '.join(VISUAL_AREAS)}")
    unknown = [a for a in areas if a not in VISUAL_AREAS]
    if unknown:
        raise ValueError(f"unknown area {unknown[0]!r}: use Allen acronyms among {' '.join(VISUAL_AREAS)}")
    return list(areas)


def parse_acronyms(value) -> list[str]:
    """A session's area list, from allensdk (a list, NaN for unlabelled channels)
    or from sessions.csv (its string form, e.g. "['CA1', 'VISp', nan]")."""
    if isinstance(value, str):
        return re.findall(r"'([^']+)'", value)
    return [str(v) for v in np.asarray(value, dtype=object).ravel() if isinstance(v, str)]


def select_sessions(table: pd.DataFrame, areas: list[str], session_type: str = SESSION_TYPE,
                    genotype: str = GENOTYPE) -> pd.DataFrame:
    """Rows of an Allen session table (allensdk's ``get_session_table()`` or
    sessions.csv) with this session type and genotype that recorded at least
    one of ``areas`` (the original's filter, for a list of areas). Columns used:
    ``session_type``, ``full_genotype``, ``ecephys_structure_acronyms``."""
    missing = {"session_type", "full_genotype", "ecephys_structure_acronyms"} - set(table.columns)
    if missing:
        raise ValueError(f"the session table lacks {', '.join(sorted(missing))}: give the Allen sessions.csv")
    has_area = table["ecephys_structure_acronyms"].map(lambda v: bool(set(parse_acronyms(v)) & set(areas)))
    return table[(table["session_type"] == session_type) & (table["full_genotype"] == genotype) & has_area]


def session_ids(table: pd.DataFrame) -> list[int]:
    """Session ids of a table indexed by id (allensdk) or with an ``id`` column (csv)."""
    return [int(i) for i in (table["id"] if "id" in table.columns else table.index)]
