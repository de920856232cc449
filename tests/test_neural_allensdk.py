"""A session written by allensdk's own writer classes reads the same through
EcephysSession and through neural_fitting.nwb. Runs only where allensdk is
installed (its own venv, neural_fitting/requirements-allen.txt); skipped in the core env."""
from datetime import datetime, timezone

import numpy as np
import pytest

allensdk = pytest.importorskip("allensdk")

from neural_fitting.nwb import read_session  # noqa: E402
from neural_fitting.spikes import presentation_counts  # noqa: E402

FRAME = 1 / 30
N_FRAMES, N_REPEATS = 4, 3
AREAS = ["VISp", "VISl", "VISp", "CA1", "VISl"]


def write_allensdk_session(path):
    import pandas as pd
    import pynwb
    from allensdk.brain_observatory.behavior.data_objects.stimuli.presentations import Presentations
    from allensdk.brain_observatory.ecephys._channel import Channel
    from allensdk.brain_observatory.ecephys._channels import Channels
    from allensdk.brain_observatory.ecephys._probe import Probe
    from allensdk.brain_observatory.ecephys._unit import Unit
    from allensdk.brain_observatory.ecephys._units import Units
    from allensdk.brain_observatory.ecephys.probes import Probes
    from allensdk.brain_observatory.nwb import add_stimulus_timestamps

    rows, t = [], 1.0
    for block, name in enumerate(["natural_movie_one", "natural_movie_three"]):
        for _ in range(N_REPEATS):
            for frame in range(N_FRAMES):
                rows.append({"start_time": t, "stop_time": t + FRAME, "stimulus_name": name, "stimulus_block": block,
                             "stimulus_index": block, "frame": float(frame), "orientation": np.nan,
                             "temporal_frequency": np.nan, "spatial_frequency": np.nan, "contrast": 1.0,
                             "phase": "[0.0, 0.0]", "size": "[250.0, 250.0]"})
                t += FRAME
        t += 1.0
    stim = pd.DataFrame(rows)
    rng = np.random.default_rng(0)
    spikes = [np.sort(rng.uniform(0.5, t, 40)) for _ in AREAS]

    nwb = pynwb.NWBFile(session_description="synthetic", identifier="123", session_id="123",
                        session_start_time=datetime(2019, 1, 1, tzinfo=timezone.utc), institution="x")
    add_stimulus_timestamps(nwb, stim.start_time.values)
    nwb = Presentations(stim, sort_columns=False).to_nwb(nwbfile=nwb)
    channels = [Channel(id=10 + i, probe_id=1000, valid_data=True, probe_channel_number=i,
                        probe_vertical_position=20 * i, probe_horizontal_position=11, structure_acronym=area)
                for i, area in enumerate(AREAS)]
    units = [Unit(id=500 + u, peak_channel_id=10 + u, local_index=u, cluster_id=u, quality="good", firing_rate=5.0,
                  isi_violations=0.1, presence_ratio=0.99, amplitude_cutoff=0.01, snr=3.0,
                  mean_waveforms=np.zeros((len(AREAS), 82), "f4"), spike_amplitudes=np.ones(len(s)), spike_times=s)
             for u, s in enumerate(spikes)]
    Probes(probes=[Probe(id=1000, name="probeC", channels=Channels(channels), units=Units(units))]).to_nwb(nwbfile=nwb)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb, cache_spec=True)


def test_allensdk_and_our_reader_agree(tmp_path):
    from allensdk.brain_observatory.ecephys.ecephys_session import EcephysSession

    path = tmp_path / "session.nwb"
    write_allensdk_session(path)
    sdk = EcephysSession.from_nwb_path(str(path))
    ours = read_session(path, ["VISp", "VISl"], ["natural_movie_one", "natural_movie_three"])

    sdk_units = sdk.units[sdk.units["structure_acronym"].isin(["VISp", "VISl"])].sort_index()
    np.testing.assert_array_equal(ours.unit_ids, sdk_units.index.values)
    np.testing.assert_array_equal(ours.unit_areas, sdk_units["structure_acronym"].values)

    table = sdk.get_stimulus_table(["natural_movie_three"])
    sdk_counts = sdk.presentationwise_spike_counts(bin_edges=[0.0, FRAME], stimulus_presentation_ids=table.index.values,
                                                   unit_ids=ours.unit_ids)
    movie = ours.presentations["natural_movie_three"]
    np.testing.assert_allclose(movie.start, table["start_time"].values)
    counts = presentation_counts(ours.spike_times, movie.start, movie.stop)
    np.testing.assert_array_equal(counts, sdk_counts.values[:, 0, :].T)
    np.testing.assert_array_equal(movie.repeat, np.repeat(np.arange(N_REPEATS), N_FRAMES))
