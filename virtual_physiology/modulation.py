"""Modulation ratio F1/F0 of each unit's response to its preferred grating,
in the original's two variants, the virtual physiology's and the
response_parameters notebook's (docs/faithfulness.md, "Two modulation ratios":
both reproduced, quirks included).

Input in both: ``optimum_responses`` (n_units, 50), each unit's response to
its preferred grating after the 4 warm-up frames (``tuning.responses_at``).
Simple (linear, half-wave rectified) cells give F1/F0 > 1, complex
(phase-invariant) cells F1/F0 < 1.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import OptimizeWarning, curve_fit
from tqdm.auto import tqdm

from utils import pearson
from virtual_physiology import ProbeError

_FIRST_DRAWS, _LATER_DRAWS, _LATER_ITERATIONS = 10_000, 1_000, 4


def modulation_ratio_vphys(optimum_responses: np.ndarray, seed: int = 0, chunk_units: int = 4,
                           progress: bool = True) -> dict:
    """The vphys script's modulation ratio, by random search for a sine.

    y = optimum[4:50] (46 samples) on x = 4 .. 49; fit a sin(b x + c) + d by
    minimum MSE over random candidates:
    - iteration 0: 10,000 draws, a ~ U(mean(y) -+ 2.5), b ~ U(0, 10),
      c ~ U(0, 46), d ~ U(min(y) - 2.5, max(y) + 2.5);
    - iterations 1-4, s = 1 - 0.2 it: 1,000 draws around the previous best,
      a +- 2s, b +- s, c +- 2s, d +- 2s (uniform); each iteration keeps the
      best of its own draws only (the previous best is forgotten, as in the
      original), and the last iteration's best is the fit.
    Quirk kept: if the fit has loss < 0.05 or R^2 > 0.5 it is redone and the
    second fit kept. Then F0 = mean(optimum[4:]), F1 = |a|, MR_all = F1 / F0,
    cc = Pearson(fit, y); accepted where cc > 0.9 and F0 != 0, and
    ``modulation_ratio`` is MR_all there and NaN elsewhere (the original's False).

    The search ranges are absolute (a within mean(y) +- 2.5, steps of +-2),
    so the method assumes responses of order 1, like the trained model's; for
    responses much larger than that, |a| stays near mean(y) and MR near 1.

    Each unit draws from its own generator, default_rng([seed, unit index]),
    so a unit's result does not depend on the other units or on chunking.
    Returns arrays over units: modulation_ratio, accepted, MR_all, F0, F1,
    cc, R2, loss (MSE), params (n, 4) = (a, b, c, d).
    """
    optimum = _check(optimum_responses, 50)
    y, x = optimum[:, 4:50], np.arange(4.0, 50.0)
    rngs = [np.random.default_rng([seed, unit]) for unit in range(len(y))]
    params = np.empty((len(y), 4))
    bar = tqdm(total=len(y), desc="modulation ratio (random search)", unit="unit", disable=not progress)
    for first in range(0, len(y), chunk_units):
        units = np.arange(first, min(first + chunk_units, len(y)))
        params[units] = _random_search(y[units], x, [rngs[u] for u in units])
        loss, r2, _ = _fit_quality(params[units], y[units], x)
        with np.errstate(invalid="ignore"):
            again = units[(loss < 0.05) | (r2 > 0.5)]
        if len(again):
            params[again] = _random_search(y[again], x, [rngs[u] for u in again])
        bar.update(len(units))
    bar.close()
    loss, r2, cc = _fit_quality(params, y, x)
    f0, f1 = optimum[:, 4:].mean(axis=1), np.abs(params[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = f1 / f0
        accepted = (cc > 0.9) & (f0 != 0)
    return dict(modulation_ratio=np.where(accepted, ratio, np.nan), accepted=accepted, MR_all=ratio,
                F0=f0, F1=f1, cc=cc, R2=r2, loss=loss, params=params)


def modulation_ratio_curve_fit(optimum_responses: np.ndarray, progress: bool = True) -> dict:
    """The figure notebook's modulation ratio, by least squares from an FFT guess.

    y = optimum[10:] (40 samples) on x = 0 .. 39 (the sample index; the FFT
    phase guess below is only right on this grid).
    The guess is the largest positive-frequency peak of FFT(y - mean(y)),
    excluding DC and Nyquist (the first if tied): omega0 = 2 pi f,
    phi0 = angle + pi/2, A0 = |X| / (n/2), d0 = mean(y); scipy's curve_fit
    of a sin(b x + c) + d starts there, and keeps the guess if it fails.
    F1F0 = a / d (signed, as in the notebook); ``keep`` where
    0 <= F1F0 <= 2 and Pearson(fit, y) > 0. A silent unit gives 0/0 = NaN
    and is not kept. Returns arrays over units: F1F0, keep, cc, params (n, 4).
    """
    optimum = _check(optimum_responses, 11)
    y = optimum[:, 10:]
    n = y.shape[1]
    x = np.arange(float(n))
    spectrum = np.fft.rfft(y - y.mean(axis=1, keepdims=True), axis=1)
    last = n // 2 if n % 2 else n // 2 - 1  # drop the Nyquist bin when n is even
    peak = 1 + np.abs(spectrum[:, 1:last + 1]).argmax(axis=1)
    coefficient = spectrum[np.arange(len(y)), peak]
    guesses = np.column_stack([np.abs(coefficient) / (n / 2), 2 * np.pi * peak / n,
                               np.angle(coefficient) + np.pi / 2, y.mean(axis=1)])
    params = guesses.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # singular covariance on flat responses
        for unit in tqdm(range(len(y)), desc="modulation ratio (curve_fit)", unit="unit", disable=not progress):
            try:
                fitted = curve_fit(_sine, x, y[unit], p0=guesses[unit])[0]
            except RuntimeError:  # no convergence: the notebook keeps the guess
                continue
            if np.isfinite(fitted).all():
                params[unit] = fitted
    cc = pearson(_sine(x[None], *params.T[..., None]), y)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = params[:, 0] / params[:, 3]
        keep = (ratio >= 0) & (ratio <= 2) & (cc > 0)
    return dict(F1F0=ratio, keep=keep, cc=cc, params=params)


def _random_search(y: np.ndarray, x: np.ndarray, rngs: list) -> np.ndarray:
    """The random search of ``modulation_ratio_vphys`` for units ``y`` (m, 46): (m, 4)."""
    low, high = y.min(axis=1), y.max(axis=1)
    centre = np.stack([y.mean(axis=1), np.full(len(y), 5.0), np.full(len(y), 23.0), (low + high) / 2], axis=1)
    half_width = np.stack([np.full(len(y), 2.5), np.full(len(y), 5.0), np.full(len(y), 23.0),
                           (high - low) / 2 + 2.5], axis=1)
    best = _best_of(centre, half_width, _FIRST_DRAWS, y, x, rngs)
    for iteration in range(1, _LATER_ITERATIONS + 1):
        scale = 1 - 0.2 * iteration
        best = _best_of(best, np.broadcast_to([2 * scale, scale, 2 * scale, 2 * scale], best.shape),
                        _LATER_DRAWS, y, x, rngs)
    return best


def _best_of(centre, half_width, n_draws, y, x, rngs) -> np.ndarray:
    """Best (a, b, c, d) per unit among n_draws uniform draws in centre +- half_width.

    The MSE of a candidate only needs three sums over the samples of
    s = sin(b x + c):
    n MSE = a^2 sum s^2 + 2 a d sum s - 2 a sum s y + n d^2 - 2 d sum y + sum y^2,
    and on the evenly spaced x the sines follow the recurrence
    s_{k+1} = 2 cos(b) s_k - s_{k-1}, so the sums are accumulated sample by
    sample over (units, draws) arrays without evaluating a sine per sample
    (rounding grows by about k^2 eps, ~1e-13 after 46 samples in float64).
    """
    draws = np.stack([rng.random((n_draws, 4)) for rng in rngs])  # (m, n_draws, 4)
    candidates = torch.as_tensor(centre[:, None] + (2 * draws - 1) * half_width[:, None])
    a, b, c, d = candidates.unbind(-1)
    y_t = torch.as_tensor(y)
    step = x[1] - x[0]
    previous, current = torch.sin(b * (x[0] - step) + c), torch.sin(b * x[0] + c)
    two_cos = 2 * torch.cos(b * step)
    sum_s, sum_ss, sum_sy = torch.zeros_like(b), torch.zeros_like(b), torch.zeros_like(b)
    for k in range(len(x)):
        if k:
            previous, current = current, torch.addcmul(-previous, two_cos, current)
        sum_s += current
        sum_ss.addcmul_(current, current)
        sum_sy.addcmul_(current, y_t[:, k:k + 1])
    n, sum_y, sum_yy = len(x), y_t.sum(-1, keepdim=True), y_t.square().sum(-1, keepdim=True)
    loss = a * a * sum_ss + 2 * a * (d * sum_s - sum_sy) + n * d * d - 2 * d * sum_y + sum_yy
    pick = loss.argmin(dim=1)
    return candidates[torch.arange(len(y)), pick].numpy()


def _fit_quality(params, y, x):
    """MSE, R^2 = 1 - SS_res / SS_tot and Pearson r of the fitted sines."""
    fit = _sine(x[None], *params.T[..., None])
    residual = np.sum((fit - y) ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1 - residual / np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return residual / y.shape[1], r2, pearson(fit, y)


def _sine(x, a, b, c, d):
    return a * np.sin(b * x + c) + d


def _check(optimum_responses, min_frames: int) -> np.ndarray:
    optimum = np.asarray(optimum_responses, dtype=np.float64)
    if optimum.ndim != 2 or optimum.shape[1] < min_frames:
        raise ProbeError(f"optimum responses have shape {optimum.shape}, expected (n_units, 50): "
                         "pass each unit's 50-frame response to its preferred grating")
    return optimum
