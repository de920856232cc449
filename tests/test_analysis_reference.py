"""The reference loaders reproduce the summaries stored with the data and label correctly."""
import numpy as np
import pytest

from analysis import AnalysisError, reference


@pytest.mark.parametrize("area", ["V1", "V2", "MT"])
def test_pattern_index_reproduces_stored_summary(area):
    pi = reference.pattern_index(area)
    summary = reference.dataset(reference.PLAID_IDS[area])["summary"]["PI"]
    assert pi.values.size == summary["n"]
    assert pi.values.mean() == pytest.approx(summary["mean"])
    assert np.mean(pi.values > 1.28) * 100 == pytest.approx(summary["pct_above_1.28"])
    assert area in pi.label and "macaque" in pi.label


def test_plaid_reference_means_in_hierarchy_order():
    means = [reference.pattern_index(a).values.mean() for a in ("V1", "V2", "MT")]
    np.testing.assert_allclose(means, [-3.687, -1.966, -0.490], atol=1e-3)


def test_modulation_ratio_histograms():
    edges, v1, label = reference.modulation_ratio_histogram("V1")
    stored = reference.dataset("mata_ringach_2005_V1")["derived"]["histogram_as_used"]["proportions"]
    np.testing.assert_allclose(v1, stored)
    assert v1.sum() == pytest.approx(62 / 64) and "Mata & Ringach 2005" in label
    edges2, v2, label2 = reference.modulation_ratio_histogram("V2")
    np.testing.assert_allclose(edges, edges2)
    assert v2.sum() == pytest.approx(1.0) and "Levitt et al. 1994" in label2


def test_surround_labels_say_what_the_data_are():
    suppressed = reference.surround_index("mouse", "feedback_suppressed")
    control = reference.surround_index("mouse", "control")
    assert "feedback suppressed" in suppressed.label and "mouse" in suppressed.label
    assert suppressed.values.mean() == pytest.approx(37.239, abs=1e-3)
    assert control.values.mean() == pytest.approx(51.492, abs=1e-3)
    assert "[attribution uncertain]" in control.citation
    macaque = reference.surround_index("macaque", "control")
    assert macaque.values.size == 66 and "Nassi et al. 2013" in macaque.label
    summary = reference.feedback_inactivation_summary()
    assert summary["label"].startswith("marmoset") and "mouse" not in summary["label"].lower()
    assert reference.size_tuning("mouse")["size_deg"].size == 7


def test_connectivity_reference():
    ko = reference.connection_probability("orientation")
    np.testing.assert_allclose(ko["probability"], [10 / 26, 11 / 44, 4 / 24])
    assert ko["edges_deg"].size == ko["connected"].size + 1
    assert reference.connection_probability("direction")["connected"].size == 5
    iac = reference.long_range_axis_fractions()
    assert iac["coaxial"].sum() + iac["orthogonal"].sum() == pytest.approx(1.0) and iac["n"] == 159


def test_preferred_frequency_and_bad_ids():
    assert reference.preferred_frequency("tf")["MT"][0] == 11.5
    with pytest.raises(AnalysisError, match="unknown reference dataset"):
        reference.dataset("nope")
    with pytest.raises(AnalysisError):
        reference.surround_index("cat", "control")
