"""Gabor fits of receptive fields (RWAs), batched over units, a strict "is
this really Gabor-like" test, and a fit-free orientation index of an RF.

Parametrisation of the original's fitter (JesseLivezey/gabor_fit, which
needs Theano; reimplemented here in torch). On an (H, W) patch with
x = column and y = row:

    x' =  (x - x0) cos theta + (y - y0) sin theta      (along the carrier)
    y' = -(x - x0) sin theta + (y - y0) cos theta      (along the stripes)
    g  = exp(-x'^2 / (2 e^lvx) - y'^2 / (2 e^lvy)) * sin(k x' + phi),
    k  = 2 pi / (2 + e^lkx)                            (wavelength > 2 px, f < 0.5 cycles/px)

The k mapping is the one of that package's fitting graph, so carriers up to
the Nyquist frequency can be fitted (docs/faithfulness.md, "Gabor frequency
range"). That package's ``standardize_params`` converts with 2 sqrt 2 in place
of 2, a form that would stop fits at 0.354 cycles/px; the original stores the
raw lkx of the fitting graph.

The model image is g / ||g||, fitted to the patch / ||patch|| by least
squares, i.e. by maximising their cosine similarity. For fixed
(x0, y0, theta, lvx, lvy, lkx) the best phase has a closed form (g is
cos(phi) S + sin(phi) C with S, C the sine and cosine Gabors), so phi is not
searched: only the six other parameters are, by

1. a grid of starts (theta x frequency x width) at the centre of the blurred
   (sigma 2 px) |patch| peak, each scored in closed form;
2. Adam on the best ``n_starts`` starts of every unit at once (all units x
   starts in one batched torch problem), keeping the best per unit.

Stored per unit as the original stores it: ``gabor_params`` = (1, x0, y0,
theta, lvx, lvy, lkx, phi), x0 the column and y0 the row, indices 4 and 5
log-variances (px^2) along / across the carrier and 6 the raw lkx of the
mapping above, so f = 1 / (2 + e^lkx) cycles/px (``gabor_frequency``), the
same number the original stores for the same Gabor. theta is reported in
[0, pi) (theta + pi is the same Gabor with phi -> pi - phi). The original's
fitter reads the patch with its "x" along the rows and writes
x' = cos(t)(row - row0) - sin(t)(col - col0), so its angle t is this theta
minus pi/2 (mod pi, phi unchanged; docs/faithfulness.md, "Gabor theta
convention"). Nothing downstream reads theta, so the offset changes no result.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from virtual_physiology import ProbeError

_GRID_THETAS = 8
_GRID_FREQUENCIES = np.geomspace(0.03, 0.46, 12)  # cycles/px
_GRID_SIGMAS = (1.0, 2.0, 4.0)  # px, isotropic
_MIN_LOG_VARIANCE = 2 * math.log(0.3)  # sigma >= 0.3 px; the upper bound is the frame size
_LKX_RANGE = (-6.0, 6.0)  # f from 0.499 to 0.0025 cycles/px
MIN_WAVELENGTH = 2.0  # px: wavelength = 2 + e^lkx


def gabor_frequency(lkx) -> np.ndarray:
    """Carrier frequency in cycles/px: f = 1 / (2 + e^lkx)."""
    return 1.0 / (MIN_WAVELENGTH + np.exp(np.asarray(lkx, dtype=np.float64)))


def gabor_lkx(frequency) -> np.ndarray:
    """The stored lkx of a carrier at ``frequency`` cycles/px (0 < f < 0.5):
    lkx = log(1 / f - 2), the inverse of ``gabor_frequency``."""
    return np.log(1.0 / np.asarray(frequency, dtype=np.float64) - MIN_WAVELENGTH)


def gabor_image(params, frame_shape: tuple[int, int]) -> np.ndarray:
    """Unit-norm Gabor image(s) (..., H, W) from ``gabor_params`` (..., 8)."""
    params = torch.as_tensor(np.asarray(params, dtype=np.float64))
    height, width = frame_shape
    sine, cosine = _sine_cosine_gabors(params[..., 1:7], _pixel_grid(frame_shape, params.dtype, "cpu"))
    phi = params[..., 7:8]
    image = torch.cos(phi) * sine + torch.sin(phi) * cosine
    image = image / image.norm(dim=-1, keepdim=True)
    return image.reshape(*params.shape[:-1], height, width).numpy()


def strict_gabor(params, r, frame_shape: tuple[int, int], min_r: float = 0.7, min_sigma: float = 1.0,
                 max_sigma_fraction: float = 0.3, min_cycles_per_sigma: float = 0.5) -> np.ndarray:
    """Whether each fit is a real, oriented Gabor rather than a blob: (n,) bool.

    ``params`` (n, 8) are ``gabor_params``, ``r`` (n,) the fits' Pearson r.
    A unit passes when all of these hold:
    - the fit is good: r >= ``min_r`` (Pearson of fit and RWA);
    - the centre is inside the frame: -0.5 <= x0 <= W - 0.5, -0.5 <= y0 <= H - 0.5;
    - the envelope is wider than one pixel and narrower than the frame along
      and across the carrier: ``min_sigma`` < sigma <= ``max_sigma_fraction`` * max(H, W);
    - the carrier shows: f * sigma_along >= ``min_cycles_per_sigma``, at the
      default 0.5 at least half a carrier cycle per envelope sigma, i.e. the
      +-1 sigma envelope holds a whole cycle.
    Single-pixel blobs fit with r ~ 0.85 but fail the
    width or the carrier condition. NaN fits fail.
    """
    params, r = np.asarray(params, dtype=np.float64), np.asarray(r, dtype=np.float64)
    height, width = frame_shape
    x0, y0, lvx, lvy, lkx = params[:, 1], params[:, 2], params[:, 4], params[:, 5], params[:, 6]
    sigma_along, sigma_across = np.exp(lvx / 2), np.exp(lvy / 2)
    max_sigma = max_sigma_fraction * max(height, width)
    with np.errstate(invalid="ignore"):
        return ((r >= min_r)
                & (x0 >= -0.5) & (x0 <= width - 0.5) & (y0 >= -0.5) & (y0 <= height - 0.5)
                & (sigma_along > min_sigma) & (sigma_across > min_sigma)
                & (sigma_along <= max_sigma) & (sigma_across <= max_sigma)
                & (gabor_frequency(lkx) * sigma_along >= min_cycles_per_sigma))


def original_gabor(params, r, frame_shape: tuple[int, int] | None = None, min_r: float = 0.7,
                   min_log_variance: float = 0.5) -> np.ndarray:
    """The original's test of a Gabor-like RF (its connectivity notebook's unit
    selection): (n,) bool, r > ``min_r`` and both envelope log-variances
    (``params[:, 4:6]``, px^2) > ``min_log_variance``, i.e. sigma > e^0.25 = 1.28 px
    along and across the carrier. With ``frame_shape`` (H, W) the fitted centre
    must also lie inside the frame (-0.5 <= x0 <= W - 0.5, -0.5 <= y0 <= H - 0.5),
    as a receptive field must. ``params`` (n, 8) are ``gabor_params``, ``r`` (n,)
    the fits' Pearson r. NaN fits fail. Unlike ``strict_gabor`` it sets no upper
    width and no carrier cycles per envelope, so one- and two-subregion fields
    (most of macaque V1's: Ringach 2002, nx < 0.5) pass.
    """
    params, r = np.asarray(params, dtype=np.float64), np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        passes = (r > min_r) & (params[:, 4] > min_log_variance) & (params[:, 5] > min_log_variance)
        if frame_shape is not None:
            height, width = frame_shape
            x0, y0 = params[:, 1], params[:, 2]
            passes &= (x0 >= -0.5) & (x0 <= width - 0.5) & (y0 >= -0.5) & (y0 <= height - 0.5)
    return passes


def orientation_index(rwa: np.ndarray, frame_shape: tuple[int, int]) -> np.ndarray:
    """Orientation selectivity of each RF from its 2-D power spectrum: (n,).

    With P(k) = |FFT2(RF)|^2 at the frequencies k = (kx, ky) of the H x W
    grid (cycles/px) and theta_k = atan2(ky, kx),

        OI = |sum_k P(k) e^{2 i theta_k}| / sum_k P(k),   over 0 < |k| < 0.5,

    the circular concentration of spectral power over orientation (doubled
    angles, so k and -k count as the same orientation). A grating at one grid
    frequency gives 1; an isotropic RF (a centred Gaussian blob, a single
    pixel: flat spectrum) gives 0 on a square frame, an oriented Gabor close
    to 1 (higher the more carrier cycles per envelope width). DC is left out,
    so the mean of the RF does not count; the disc |k| < 0.5 leaves out the
    grid's corners and the unpaired Nyquist row/column, which would favour
    the axes or diagonals. No fit is involved, so it cannot be fooled by a
    Gabor fitted to a blob. ``rwa`` is (n_units, H*W); rows that are NaN or
    all zero give NaN.
    """
    rwa = np.asarray(rwa, dtype=np.float64)
    height, width = frame_shape
    if rwa.ndim != 2 or rwa.shape[1] != height * width:
        raise ProbeError(f"rwa has shape {rwa.shape}, expected (n_units, {height * width}) "
                         f"for frames {tuple(frame_shape)}: pass one flattened RF per row")
    power = np.abs(np.fft.fft2(np.nan_to_num(rwa).reshape(-1, height, width))) ** 2
    ky, kx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.hypot(kx, ky)
    disc = (radius > 0) & (radius < 0.5)
    power = power[:, disc]
    total = power.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.abs(power @ np.exp(2j * np.arctan2(ky, kx)[disc])) / total
    return np.where(np.isfinite(rwa).all(axis=1) & (total > 0), index, np.nan)


def fit_gabors(rwa: np.ndarray, frame_shape: tuple[int, int], n_starts: int = 4, device="cpu",
               seed: int = 0, steps: int = 150, chunk_units: int = 1024,
               progress: bool = True) -> dict[str, np.ndarray]:
    """Fit a Gabor to every row of ``rwa`` (n_units, H*W).

    The ``n_starts`` best grid starts per unit are refined together by
    ``steps`` Adam steps, ``chunk_units`` units at a time; all but the first
    start get their centre offset by U(-0.5, 0.5) px so that the refined
    starts differ. The offsets are drawn once from ``seed`` and shared by
    every unit, so a unit's fit depends only on its own RWA and ``seed``, not
    on the other rows, their order or ``chunk_units`` (up to float32
    rounding in the batched products). Rows that are NaN or all zero (units
    not kept by the RWA) get NaN everywhere and fail the strict test.

    Returns arrays over units: ``gabor_params`` (n, 8), ``gabor_x`` (column),
    ``gabor_y`` (row), ``gabor_r`` = Pearson(fit, RWA), ``gabor_loss`` =
    mean((fit / ||fit|| - RWA)^2) against the raw RWA (as the original),
    ``sigma_x`` / ``sigma_y`` = e^(lv/2) along / across the carrier (px),
    ``frequency`` (cycles/px) and ``strict_gabor`` (see ``strict_gabor``).
    """
    rwa = np.asarray(rwa, dtype=np.float64)
    height, width = frame_shape
    if rwa.ndim != 2 or rwa.shape[1] != height * width:
        raise ProbeError(f"rwa has shape {rwa.shape}, expected (n_units, {height * width}) "
                         f"for frames {tuple(frame_shape)}: pass one flattened RF per row")
    if n_starts < 1 or chunk_units < 1:
        raise ProbeError(f"n_starts and chunk_units must be at least 1, got {n_starts} and {chunk_units}")
    device = torch.device(device)
    norms = np.linalg.norm(np.nan_to_num(rwa), axis=1)
    valid = np.flatnonzero(np.isfinite(rwa).all(axis=1) & (norms > 0))
    params = np.full((len(rwa), 8), np.nan)
    offsets = torch.rand(n_starts, 2, generator=torch.Generator().manual_seed(seed)) - 0.5
    offsets[0] = 0
    bar = tqdm(total=-(-len(valid) // chunk_units) * steps, desc="Gabor fits", unit="step", disable=not progress)
    for first in range(0, len(valid), chunk_units):
        rows = valid[first:first + chunk_units]
        patches = torch.as_tensor(rwa[rows] / norms[rows, None], dtype=torch.float32, device=device)
        starts = _grid_starts(patches, frame_shape, n_starts)
        starts[..., :2] += offsets[:starts.shape[1]].to(device)
        params[rows] = _refine(starts, patches, frame_shape, steps, bar)
    bar.close()

    fits = gabor_image(params, frame_shape).reshape(len(rwa), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred_fit = fits - fits.mean(axis=1, keepdims=True)
        centred_rwa = rwa - rwa.mean(axis=1, keepdims=True)
        r = (centred_fit * centred_rwa).sum(1) / np.sqrt((centred_fit ** 2).sum(1) * (centred_rwa ** 2).sum(1))
    return dict(
        gabor_params=params, gabor_x=params[:, 1], gabor_y=params[:, 2], gabor_r=r,
        gabor_loss=np.mean((fits - rwa) ** 2, axis=1),
        sigma_x=np.exp(params[:, 4] / 2), sigma_y=np.exp(params[:, 5] / 2),
        frequency=gabor_frequency(params[:, 6]),
        strict_gabor=strict_gabor(params, r, frame_shape),
    )


def _grid_starts(patches: torch.Tensor, frame_shape, n_starts: int) -> torch.Tensor:
    """The ``n_starts`` best grid starts (n, n_starts, 6) for unit-norm patches (n, P).

    Every start sits at the pixel where the blurred (sigma 2 px) |patch| peaks.
    Since those centres are whole pixels, the grid of Gabors (theta x f x
    sigma) is drawn once around the middle of a (2H-1, 2W-1) canvas and each
    centre's window is cut from it; units sharing a centre are scored by one
    matrix product.
    """
    height, width = frame_shape
    n = len(patches)
    blurred = gaussian_filter(patches.abs().reshape(n, height, width).cpu().numpy(), sigma=(0, 2, 2))
    peaks = blurred.reshape(n, -1).argmax(axis=1)

    thetas = np.arange(_GRID_THETAS) * np.pi / _GRID_THETAS
    sigmas = [s for s in _GRID_SIGMAS if s <= max(height, width) / 4] or [1.0]
    grid = torch.tensor([(width - 1.0, height - 1.0, t, 2 * np.log(s), 2 * np.log(s),
                          gabor_lkx(f))
                         for t in thetas for f in _GRID_FREQUENCIES for s in sigmas],
                        dtype=patches.dtype, device=patches.device)
    canvas = _pixel_grid((2 * height - 1, 2 * width - 1), patches.dtype, patches.device)
    sine, cosine = (bank.reshape(len(grid), 2 * height - 1, 2 * width - 1)
                    for bank in _sine_cosine_gabors(grid, canvas))
    best = torch.empty(n, min(n_starts, len(grid)), dtype=torch.long, device=patches.device)
    for peak in np.unique(peaks):
        row, col = divmod(int(peak), width)
        window = (slice(None), slice(height - 1 - row, 2 * height - 1 - row), slice(width - 1 - col, 2 * width - 1 - col))
        s, c = sine[window].reshape(len(grid), -1), cosine[window].reshape(len(grid), -1)
        units = torch.as_tensor(np.flatnonzero(peaks == peak), device=patches.device)
        score = _phase_projection(patches[units] @ s.T, patches[units] @ c.T,
                                  (s * s).sum(-1), (c * c).sum(-1), (s * c).sum(-1))[0]
        best[units] = score.topk(best.shape[1], dim=1).indices
    starts = grid[best]
    rows, cols = np.divmod(peaks, width)
    starts[..., 0] = torch.as_tensor(cols, dtype=patches.dtype, device=patches.device)[:, None]
    starts[..., 1] = torch.as_tensor(rows, dtype=patches.dtype, device=patches.device)[:, None]
    return starts


def _refine(starts: torch.Tensor, patches: torch.Tensor, frame_shape, steps: int, bar) -> np.ndarray:
    """Adam on every unit x start at once, then the best start per unit.

    The loss is 1 - (cosine similarity with the best phase), summed over the
    independent problems so each gets its own gradient; after each step the
    parameters are clipped to the bounds; ``bar`` advances by one per step.
    Returns (n, 8) gabor_params.
    """
    n = len(patches)
    pixels = _pixel_grid(frame_shape, patches.dtype, patches.device)
    lower, upper = _bounds(frame_shape, patches.device)
    shape = starts.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([shape], lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(steps, 1), eta_min=0.002)
    for _ in range(steps):
        optimiser.zero_grad()
        (1 - _best_phase_score(shape, patches[:, None], pixels)[0]).sum().backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            shape.copy_(torch.maximum(torch.minimum(shape, upper), lower))
        bar.update()

    with torch.no_grad():
        score, phi = _best_phase_score(shape, patches[:, None], pixels)
        pick = score.argmax(dim=1)
        shape = shape[torch.arange(n), pick].double().cpu().numpy()
        phi = phi[torch.arange(n), pick].double().cpu().numpy()
    # theta + pi with phi -> pi - phi is the same Gabor: report theta in [0, pi).
    flip = np.floor(shape[:, 2] / np.pi) % 2 == 1
    shape[:, 2] = np.mod(shape[:, 2], np.pi)
    phi = np.angle(np.exp(1j * np.where(flip, np.pi - phi, phi)))
    return np.column_stack([np.ones(n), shape, phi])


def _best_phase_score(shape: torch.Tensor, target: torch.Tensor, pixels):
    """Cosine similarity of the best-phase Gabor with ``target``, and that phase."""
    sine, cosine = _sine_cosine_gabors(shape, pixels)
    return _phase_projection((sine * target).sum(-1), (cosine * target).sum(-1),
                             (sine * sine).sum(-1), (cosine * cosine).sum(-1), (sine * cosine).sum(-1))


def _phase_projection(q_s, q_c, g_ss, g_cc, g_sc):
    """Best phase in closed form from the projections q = (<S, p>, <C, p>) and
    the Gram matrix G of the sine and cosine Gabors S, C.

    g = a S + b C with (a, b) = (cos phi, sin phi); maximising <g, p> / ||g||
    over (a, b) gives (a, b) proportional to G^-1 q and the maximum
    sqrt(q^T G^-1 q). Returns (that maximum, phi).
    """
    ridge = 1e-6 * (g_ss + g_cc) + 1e-20  # keeps G invertible when S or C vanishes
    g_ss, g_cc = g_ss + ridge, g_cc + ridge
    det = g_ss * g_cc - g_sc ** 2
    a, b = (g_cc * q_s - g_sc * q_c) / det, (g_ss * q_c - g_sc * q_s) / det
    return torch.sqrt(torch.clamp(a * q_s + b * q_c, min=1e-20)), torch.atan2(b, a)


def _sine_cosine_gabors(shape: torch.Tensor, pixels):
    """(..., 6) (x0, y0, theta, lvx, lvy, lkx) -> sine and cosine Gabors (..., P)."""
    cols, rows = pixels
    x0, y0, theta, lvx, lvy, lkx = (shape[..., i:i + 1] for i in range(6))
    dx, dy = cols - x0, rows - y0
    along = dx * torch.cos(theta) + dy * torch.sin(theta)
    across = -dx * torch.sin(theta) + dy * torch.cos(theta)
    envelope = torch.exp(-along ** 2 / (2 * torch.exp(lvx)) - across ** 2 / (2 * torch.exp(lvy)))
    carrier = 2 * math.pi / (MIN_WAVELENGTH + torch.exp(lkx)) * along
    return envelope * torch.sin(carrier), envelope * torch.cos(carrier)


def _pixel_grid(frame_shape, dtype, device):
    height, width = frame_shape
    rows, cols = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                                torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return cols.reshape(-1), rows.reshape(-1)


def _bounds(frame_shape, device):
    height, width = frame_shape
    size = max(height, width)
    lower = torch.tensor([-2.0, -2.0, -1e9, _MIN_LOG_VARIANCE, _MIN_LOG_VARIANCE, _LKX_RANGE[0]])
    upper = torch.tensor([width + 1.0, height + 1.0, 1e9, 2 * math.log(size), 2 * math.log(size), _LKX_RANGE[1]])
    return lower.to(device), upper.to(device)
