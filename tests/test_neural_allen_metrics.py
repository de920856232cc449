"""The Allen Brain Observatory per-unit metrics table as the scorecard's mouse
reference, on a small synthetic CSV with the real file's columns; the
download says in one line when there is no network."""
import numpy as np
import pytest

from analysis import reference, scorecard
from neural_fitting import allen_metrics
from utils import UserInputError

COLUMNS = "ecephys_unit_id,ecephys_structure_acronym,g_osi_dg,g_dsi_dg,pref_tf_dg,pref_sf_sg,f1_f0_dg"
ROWS = ["1,VISp,0.5,0.1,2.0,0.04,0.3", "2,VISp,0.25,,4.0,0.08,1.5", "3,VISl,0.9,0.8,1.0,0.02,0.1",
        "4,VISp,,0.3,8.0,0.16,nan", "5,VISrl,0.1,0.2,15.0,0.32,0.9"]


@pytest.fixture
def metrics_csv(tmp_path):
    path = tmp_path / reference.ALLEN_METRICS_FILE
    path.write_text("\n".join([COLUMNS, *ROWS]) + "\n")
    return path


def test_a_metric_is_read_per_area_with_blanks_and_nan_dropped(metrics_csv):
    osi = reference.allen_unit_metric(metrics_csv, "g_osi_dg", "VISp")
    np.testing.assert_array_equal(osi.values, [0.5, 0.25])
    np.testing.assert_array_equal(reference.allen_unit_metric(metrics_csv, "f1_f0_dg", "VISp").values, [0.3, 1.5])
    assert osi.label == "mouse VISp (Allen Brain Observatory)" and "Siegle" in osi.citation
    assert reference.allen_unit_metric(metrics_csv, "g_dsi_dg", "VISam").values.size == 0


def test_a_short_area_column_is_accepted(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("unit_id,area,g_osi_dg\n1,VISp,0.4\n2,VISl,0.6\n")
    np.testing.assert_array_equal(reference.allen_unit_metric(path, "g_osi_dg", "VISl").values, [0.6])


@pytest.mark.parametrize("content, message", [("unit_id,g_osi_dg\n1,0.4\n", "no area column"),
                                              ("unit_id,area,g_osi_dg\n1,VISp,high\n", "holds a non-number"),
                                              (f"{COLUMNS}\n{ROWS[0]}\n", "no column 'missing'")])
def test_a_bad_table_is_a_domain_error_naming_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(reference.AllenMetricsError, match=message):
        reference.allen_unit_metric(path, "missing" if "missing" in message else "g_osi_dg", "VISp")


def test_the_allen_rows_score_against_vis_p(metrics_csv):
    rows = scorecard.allen_properties(metrics_csv)
    assert set(rows) == {"allen_global_osi_VISp", "allen_global_dsi_VISp", "allen_f1_f0_VISp", "allen_pref_sf_VISp"}
    osi = rows["allen_global_osi_VISp"].reference()
    assert osi.n_draw == 2 and osi.counts.sum() == 2
    sf = rows["allen_pref_sf_VISp"].reference()
    assert sf.counts.tolist() == [0, 1, 1, 1, 0] and rows["allen_pref_sf_VISp"].in_degrees


def test_the_download_says_in_one_line_when_there_is_no_network(tmp_path, monkeypatch):
    def offline(url, target, **kwargs):
        raise ConnectionError(f"downloading {url} failed (no route to host)")
    monkeypatch.setattr(allen_metrics, "download", offline)
    with pytest.raises(UserInputError, match="could not be downloaded"):
        allen_metrics.main(["--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []


def test_a_table_already_there_is_not_fetched_again(metrics_csv, capsys):
    allen_metrics.main(["--out", str(metrics_csv.parent), "--timeout", "0.001"])
    assert "VISp 2, VISl 1, VISrl 1, VISal 0" in capsys.readouterr().out
