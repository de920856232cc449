"""data.pipeline: each preprocessing step on hand-made inputs with known answers."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.filters import difference_of_gaussians

from data import DatasetError, pipeline
from tests.data_helpers import write_video


def test_block_mean_averages_blocks_and_drops_remainder():
    frames = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    out = pipeline.block_mean(frames, 2)
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 0] == np.mean([0, 1, 7, 8]) and out[1, 1, 2] == np.mean(frames[1, 2:4, 4:6])
    assert pipeline.block_mean(frames, 1) is frames


def test_bandpass_is_per_frame_difference_of_gaussians():
    frames = np.random.default_rng(0).random((3, 16, 12)).astype(np.float32)
    expected = np.stack([difference_of_gaussians(frame, 1) for frame in frames])
    np.testing.assert_allclose(pipeline.bandpass(frames), expected, atol=1e-6)
    np.testing.assert_allclose(pipeline.bandpass(np.full((2, 8, 8), 0.7, np.float32)), 0, atol=1e-6)


def test_scene_cut_is_found_at_the_first_frame_of_the_new_shot():
    shots = gaussian_filter(np.random.default_rng(0).random((2, 40, 60)), (0, 4, 4))  # smooth textures
    frames = np.stack([np.roll(shots[int(t >= 7)], t, axis=1) for t in range(15)])  # panning 1 px/frame
    assert pipeline.find_scene_cuts(frames).tolist() == [7]


@pytest.mark.parametrize("n, step, stride, cuts, expected", [
    (60, 1, 5, [], [0, 5, 10]),               # span 50
    (60, 1, 5, [52], [0]),                     # windows 5.. and 10.. contain frame 52's cut
    (100, 1, 10, [10], [10, 20, 30, 40, 50]),  # a cut at the start frame itself is fine
    (120, 2, 7, [], [0, 7, 14, 21]),           # span 99
    (120, 2, 7, [50], []),
    (120, 3, 1, [], []),                       # span 148 > 120
])
def test_window_starts(n, step, stride, cuts, expected):
    assert pipeline.window_starts(n, step, stride, np.array(cuts, dtype=int)).tolist() == expected


def test_cut_clips_orders_windows_rows_columns_and_steps_frames():
    t, h, w = 110, 5, 7
    frames = (np.arange(t)[:, None, None] * 1000 + np.arange(h)[:, None] * 10 + np.arange(w)).astype(np.float32)
    clips = pipeline.cut_clips(frames, np.array([0, 3]), (2, 3), frame_step=2, spatial_stride=2)
    rows, cols = [0, 2], [0, 2, 4]
    assert clips.shape == (2 * 2 * 3, 50, 6)
    for index, (start, r, c) in enumerate((s, r, c) for s in [0, 3] for r in rows for c in cols):
        for frame in (0, 49):
            np.testing.assert_array_equal(clips[index, frame], frames[start + 2 * frame, r:r + 2, c:c + 3].ravel())


def test_sweep_image_samples_bilinearly_along_a_seeded_path():
    ramp = (np.arange(60)[:, None] * 10.0 + np.arange(80)).astype(np.float32)  # bilinear is exact on it
    clips = pipeline.sweep_image(ramp, 4, (5, 6), 2, np.random.default_rng(3))
    base = (np.arange(5)[:, None] * 10.0 + np.arange(6)).ravel()
    offsets = clips - base  # every frame = the ramp at the window's corner: a constant
    np.testing.assert_allclose(offsets, offsets[..., :1].repeat(30, axis=2), atol=1e-3)
    assert len(np.unique(offsets[..., 0].round(3))) > 150  # sub-pixel, moving
    np.testing.assert_array_equal(clips, pipeline.sweep_image(ramp, 4, (5, 6), 2, np.random.default_rng(3)))
    still = pipeline.sweep_image(ramp, 2, (5, 6), 1, np.random.default_rng(3), drift_sd=0, saccade_rate=0)
    np.testing.assert_array_equal(still, still[:, :1].repeat(50, axis=1))
    assert pipeline.sweep_image(ramp[:5], 2, (5, 6), 1, np.random.default_rng(0)).shape == (0, 50, 30)


def test_keep_moving_drops_flat_and_low_motion_clips():
    # x = a sin(w t + phase_p) over 64 even phases: sd = a / sqrt(2), motion = 2 a^2 sin^2(w / 2);
    # a = 1..5 with w = 0.5..0.1 gives motion 0.122, 0.316, 0.400, 0.319, 0.125, so at the
    # median (50th percentile) clips 1-2 fail on sd and clips 1, 2, 5 on motion.
    t, phase = np.arange(50)[:, None], np.linspace(0, 2 * np.pi, 64, endpoint=False)[None, :]
    clips = np.stack([a * np.sin(w * t + phase) for a, w in zip([1, 2, 3, 4, 5], [0.5, 0.4, 0.3, 0.2, 0.1])])
    assert pipeline.keep_moving(clips, 50).tolist() == [False, False, True, True, False]
    flat = np.concatenate([clips, np.full((1, 50, 64), 3.0)])
    assert pipeline.keep_moving(flat, 0).tolist() == [True] * 5 + [False]


def test_zscore_and_copy_last_mse_known_answers():
    clips = pipeline.zscore_clips(np.random.default_rng(0).normal(3, 2, size=(4, 50, 9)))
    np.testing.assert_allclose(clips.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(clips.std(axis=(1, 2)), 1, atol=1e-5)
    ramp = np.broadcast_to(np.arange(50.0)[None, :, None], (3, 50, 4))
    assert pipeline.copy_last_mse(ramp, chunk=2) == pytest.approx(1.0)
    alternating = np.broadcast_to((-1.0) ** np.arange(50)[None, :, None], (5, 50, 2))
    assert pipeline.copy_last_mse(alternating, chunk=3) == pytest.approx(4.0)


def test_iter_gray_blocks_overlap_and_errors(tmp_path):
    levels = (20 + 6 * np.arange(30)).astype(np.uint8)
    path = tmp_path / "ramp.mp4"
    write_video(path, np.broadcast_to(levels[:, None, None], (30, 32, 48)).copy())
    assert pipeline.video_info(path) == (48, 32, 25.0)
    blocks = list(pipeline.iter_gray_blocks(path, downsample=2, block_len=12, overlap=4))
    assert [b.shape for b in blocks] == [(12, 16, 24)] * 3 + [(6, 16, 24)]
    decoded = np.concatenate([blocks[0]] + [b[4:] for b in blocks[1:]]).mean(axis=(1, 2)) * 255
    np.testing.assert_allclose(decoded, levels, atol=3)  # yuv round trip
    (whole,) = pipeline.iter_gray_blocks(path)
    assert whole.shape == (30, 32, 48)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(DatasetError, match="cannot decode .*junk.mp4"):
        list(pipeline.iter_gray_blocks(junk))


def test_a_file_without_a_video_stream_says_so_unwrapped(tmp_path):
    """The DatasetError raised inside the decoding try is passed on as it is, not
    re-wrapped by the handler of PyAV's errors ("cannot open ... (... no video stream)")."""
    import av

    sound = tmp_path / "sound.wav"
    with av.open(str(sound), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    expected = f"{sound} has no video stream: give a video file"
    for read in (pipeline.video_info, lambda path: list(pipeline.iter_gray_blocks(path))):
        with pytest.raises(DatasetError) as err:
            read(sound)
        assert str(err.value) == expected
