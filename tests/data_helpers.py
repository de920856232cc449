"""Synthetic videos for the data tests, written with PyAV."""
import av
import numpy as np
from scipy.ndimage import gaussian_filter


def write_video(path, frames, fps=25, codec="libx264"):
    """Encode (T, H, W) uint8 gray frames with PyAV (yuv420p)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def panning_video(path, n_frames=120, fps=25):
    """A smooth random texture panning 2 px/frame to the right, 96x128."""
    texture = gaussian_filter(np.random.default_rng(0).random((96, 128 + 2 * n_frames)), 3)
    texture = (texture - texture.min()) / np.ptp(texture) * 200 + 20
    frames = np.stack([texture[:, 2 * t:2 * t + 128] for t in range(n_frames)]).astype(np.uint8)
    write_video(path, frames[:, :, ::-1].copy(), fps=fps)
