"""Every shipped pretrained model loads in one line, and its card's group-1
receptive-field statistics are what the shipped weights give now."""
import json
from pathlib import Path

import pytest

from models.io import load_model
from virtual_physiology.monitors import grating_monitor
from virtual_physiology.rf_summary import SUMMARY_DIRECTIONS, receptive_field_stats

PRETRAINED = Path(__file__).resolve().parents[1] / "model_checkpoints" / "pretrained"
SHIPPED = sorted(p.parent for p in PRETRAINED.glob("*/rf_summary.json"))


def test_at_least_one_model_is_shipped():
    assert SHIPPED, f"no pretrained model (a folder with rf_summary.json) under {PRETRAINED}"


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_card_statistics_are_what_the_weights_give(folder):
    summary = json.loads((folder / "rf_summary.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    model, config, _ = load_model(folder)
    assert summary["epoch"] == config["checkpoint_epoch"]  # the card describes the latest weights
    stats = receptive_field_stats(model, summary["rwa_clips"])["stats"]
    recorded = summary["group1_receptive_fields"]["trained"]
    for key in ("fraction_original_gabor", "median_orientation_index", "fraction_strict_gabor",
                "fraction_r_above_0.7", "median_gabor_r"):
        assert stats[key] == pytest.approx(recorded[key], abs=0.01), key
        assert f"{recorded[key]:.2f}" in card, f"the card does not quote {key} = {recorded[key]:.2f}"
    gratings = grating_monitor(model.eval(), n_directions=SUMMARY_DIRECTIONS)
    recorded = summary["group1_reduced_gratings"]["trained"]
    for key in ("f1f0_above_1", "feedback_peak_ratio"):
        assert gratings[key] == pytest.approx(recorded[key], abs=0.01), key
        assert f"{recorded[key]:.2f}" in card, f"the card does not quote {key} = {recorded[key]:.2f}"
