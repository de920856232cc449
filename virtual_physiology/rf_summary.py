"""A quick, honest look at a training run: is it predicting, and what do its
group-1 receptive fields look like?

    python -m virtual_physiology.rf_summary RUN_FOLDER [--clips 2000]
    python -m virtual_physiology.rf_summary RUN_FOLDER --curve   # every checkpoint's RF quality

Writes ``rf_summary.png`` (group-1 response-weighted averages of the trained
network beside an untrained one of the same size) and ``rf_summary.json`` into
the run folder and prints:

- next-frame error on clean validation clips (no input noise) against the
  copy-last-frame baseline and against predicting zero;
- the Gabor-fit quality of group-1 RWAs with a *strict* test beside the bare
  r >= 0.7 fraction, for the trained and the untrained network. Single-pixel
  blobs fit a Gabor with r ~ 0.85 (``test_single_pixel_blobs_fit_well_but_are_not_strict_gabors``), so the bare
  fraction alone says little; the strict test asks for an envelope wider than
  a pixel and at least half a carrier cycle per envelope sigma
  (``gabor.strict_gabor``);
- the median orientation index of the group-1 RWAs, from their 2-D power
  spectra without any fit (``gabor.orientation_index``: 1 for a grating, 0
  for an isotropic blob).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from data.dataset import load_clips, split_indices
from models import build_model
from models.io import load_model
from utils import UserInputError, atomic_path, run_cli, write_json
from virtual_physiology.gabor import fit_gabors, orientation_index
from virtual_physiology.rwa import response_weighted_average


@torch.no_grad()
def next_frame_errors(model, clips: np.ndarray, warmup: int, batch_size: int = 200) -> dict:
    """Mean squared prediction error on the clean validation clips, at the model's
    own temporal offset k (frame t + k from frames <= t; k = 1 for the paper's
    loss), with the copy-last-frame baseline (NaN for k = 0, which has nothing to
    copy) and predicting zero, all on the same targets: ``analysis.mse``'s
    per-clip errors, averaged over the validation clips."""
    from analysis.mse import next_frame_errors as per_clip_errors, temporal_offset

    _, val = split_indices(len(clips))
    clean = np.asarray(clips[val], dtype=np.float32)
    errors = per_clip_errors(model, clean, warmup, batch_size)
    targets = clean[:, warmup + temporal_offset(model):]
    return {"model": float(errors["model"].mean()), "copy_last_frame": float(errors["copy_last"].mean()),
            "predict_zero": float((targets.astype(np.float64) ** 2).mean())}


def receptive_field_stats(model, n_clips: int, seed: int = 0) -> dict:
    """Group-1 RWAs (``rwa`` (n, P), ``kept`` (n,)) and ``stats``: unit
    counts, the median Gabor-fit r, the fractions with r >= 0.7 and passing
    ``gabor.strict_gabor`` (over all group-1 units; silent ones fail), and
    the median ``gabor.orientation_index`` over the responsive units (NaN if
    none responds)."""
    g1 = model.group_slices[0]
    rwa = response_weighted_average(model, n_clips=n_clips, seed=seed, progress=False)
    fields = rwa["rwa"][g1]
    fits = fit_gabors(np.nan_to_num(fields), model.frame_shape, seed=seed, progress=False)
    r = fits["gabor_r"]
    oi = orientation_index(fields, model.frame_shape)
    return {"rwa": fields, "kept": rwa["kept"][g1],
            "stats": {"units": int(len(r)), "responsive": int(rwa["kept"][g1].sum()),
                      "median_gabor_r": _nanmedian(r),
                      "fraction_r_above_0.7": float(np.mean(np.nan_to_num(r) >= 0.7)),
                      "fraction_strict_gabor": float(np.mean(fits["strict_gabor"])),
                      "median_orientation_index": _nanmedian(oi)}}


MONITOR_KEYS = ("fraction_strict_gabor", "median_orientation_index", "median_gabor_r",
                "clean_mse", "copy_last_frame_mse")


def rf_quality(model, clips: np.ndarray, warmup: int, n_clips: int = 1000, seed: int = 0) -> dict:
    """One row of the training monitor, as floats keyed by ``MONITOR_KEYS``: the
    strict-Gabor fraction, median orientation index and median Gabor r of the
    group-1 RWAs from ``n_clips`` white-noise clips (``receptive_field_stats``),
    and the clean validation next-frame MSE with the copy-last-frame baseline on
    the same frames (``next_frame_errors``). Every random draw comes from its own
    seeded generator, so monitoring never changes a training run's trajectory."""
    was_training = model.training
    model.eval()
    stats = receptive_field_stats(model, n_clips, seed=seed)["stats"]
    errors = next_frame_errors(model, clips, warmup)
    model.train(was_training)
    return {"fraction_strict_gabor": stats["fraction_strict_gabor"],
            "median_orientation_index": stats["median_orientation_index"],
            "median_gabor_r": stats["median_gabor_r"],
            "clean_mse": float(errors["model"]), "copy_last_frame_mse": float(errors["copy_last_frame"])}


def _nanmedian(values: np.ndarray) -> float:
    return float(np.nanmedian(values)) if np.isfinite(values).any() else float("nan")


def _grid_png(path: Path, panels: list[tuple[str, np.ndarray]], frame_shape, n_show: int = 64) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 8
    rows = -(-min(n_show, len(panels[0][1])) // cols)
    fig = plt.figure(figsize=(2 * cols * 0.9 + 0.5, rows * 0.95 + 0.8))
    sub = fig.subfigures(1, len(panels))
    for subfig, (title, fields) in zip(np.atleast_1d(sub), panels):
        axes = subfig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < min(n_show, len(fields)) and np.isfinite(fields[i]).all():
                img = fields[i].reshape(frame_shape)
                lim = np.abs(img).max() or 1.0
                ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim)
        subfig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def summarise(run_dir, n_clips: int = 2000) -> dict:
    run_dir = Path(run_dir)
    model, config, _ = load_model(run_dir)
    torch.manual_seed(config["seed"] + 12345)
    untrained = build_model(config).eval()
    clips = load_clips(config["dataset_path"], tuple(config["frame_shape"]), config["warmup"] + 2)
    errors = {"trained": next_frame_errors(model, clips, config["warmup"]),
              "untrained": next_frame_errors(untrained, clips, config["warmup"])}
    trained_rf = receptive_field_stats(model, n_clips)
    untrained_rf = receptive_field_stats(untrained, n_clips)
    summary = {"epoch": config.get("checkpoint_epoch"), "clean_validation_next_frame_mse": errors,
               "group1_receptive_fields": {"trained": trained_rf["stats"], "untrained": untrained_rf["stats"]},
               "rwa_clips": n_clips}
    write_json(run_dir / "rf_summary.json", summary)
    _grid_png(run_dir / "rf_summary.png",
              [(f"trained (epoch {summary['epoch']}): group-1 response-weighted averages", trained_rf["rwa"]),
               ("untrained network of the same size", untrained_rf["rwa"])], tuple(config["frame_shape"]))

    e, t, u = errors["trained"], trained_rf["stats"], untrained_rf["stats"]
    print(f"\nclean validation next-frame MSE: model {e['model']:.3f} | copy last frame {e['copy_last_frame']:.3f}"
          f" | predict zero {e['predict_zero']:.3f} | untrained model {errors['untrained']['model']:.3f}")
    print("group-1 receptive fields (RWA, Gabor fits):      trained   untrained")
    for key, label in (("median_gabor_r", "median Gabor r"), ("fraction_r_above_0.7", "fraction r >= 0.7"),
                       ("fraction_strict_gabor", "strict Gabor-like fraction"),
                       ("median_orientation_index", "median orientation index (RWA spectrum)")):
        print(f"  {label:<45} {t[key]:7.2f}   {u[key]:7.2f}")
    print(f"receptive-field grid: {run_dir / 'rf_summary.png'}")
    print(verdict(t))
    return summary


def verdict(stats: dict) -> str:
    """One line saying what the group-1 statistics show, from the numbers alone
    (strict-Gabor fraction >= 0.5: Gabor-like; median orientation index >= 0.3:
    oriented; the thresholds of the pretrained model's targets)."""
    if stats["fraction_strict_gabor"] >= 0.5:
        return "Most group-1 receptive fields are oriented, Gabor-like (strict test)."
    if stats["median_orientation_index"] >= 0.3:
        return ("Group-1 receptive fields are oriented, but most fail the strict Gabor test; the paper\n"
                "trains ~800,000 steps at 3 x 800 units (README, 'Pretrained models').")
    return ("Group-1 receptive fields are not yet oriented (localized blobs or noise): the paper trains\n"
            "~800,000 steps at 3 x 800 units (README, 'What the demo shows').")


def rf_curve(run_dir, n_clips: int = 1000) -> dict:
    """RF quality (``rf_quality``) of every checkpoint saved in a run folder, by
    epoch: for runs trained without the monitor, or to re-measure with more
    clips. Measured checkpoints are kept in ``rf_curve.json`` (keyed by epoch and
    clip count), so a rerun only measures new ones. Returns
    {"epoch": [...], "step": [...], <MONITOR_KEYS>: [...], "rwa_clips": n}."""
    import json

    run_dir = Path(run_dir)
    path = run_dir / "rf_curve.json"
    try:
        curve = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        curve = {}  # an unreadable cache is measured again and rewritten
    if curve.get("rwa_clips") != n_clips:
        curve = {"rwa_clips": n_clips, "epoch": [], "step": [], **{k: [] for k in MONITOR_KEYS}}
    clips = None
    for epoch in sorted(int(p.name.split("-")[0]) for p in run_dir.glob("*-epochs_model.safetensors")):
        if epoch in curve["epoch"]:
            continue
        model, config, history = load_model(run_dir / f"{epoch}-epochs_model.safetensors")
        if clips is None:
            clips = load_clips(config["dataset_path"], tuple(config["frame_shape"]), config["warmup"] + 2)
        row = rf_quality(model, clips, config["warmup"], n_clips=n_clips)
        step = epoch * -(-len(split_indices(len(clips))[0]) // config["batch_size"])
        for key, value in {"epoch": epoch, "step": step, **row}.items():
            curve[key].append(value)
        order = np.argsort(curve["epoch"])
        curve = {k: (v if k == "rwa_clips" else [v[i] for i in order]) for k, v in curve.items()}
        write_json(path, curve)
        print(f"epoch {epoch:5d} step {step:7d} " + " ".join(f"{k} {row[k]:.3f}" for k in MONITOR_KEYS), flush=True)
    return curve


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder written by submit_training_job.py")
    ap.add_argument("--clips", type=int, default=None,
                    help="white-noise clips for the RWA [default: 2000 for the summary, 1000 for --curve]")
    ap.add_argument("--curve", action="store_true",
                    help="instead of the summary, measure the RF quality of every saved checkpoint (rf_curve.json)")
    args = ap.parse_args(argv)
    if args.clips is not None and args.clips < 1:
        raise UserInputError(f"--clips {args.clips}: give at least 1 white-noise clip")
    if args.curve:
        rf_curve(args.run, args.clips or 1000)
    else:
        summarise(args.run, args.clips or 2000)


if __name__ == "__main__":
    run_cli(main)
