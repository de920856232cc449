"""The plotting rule, checked on the Figure objects the figure functions return:
an empty population says so in its panel (no bare axis), every histogram panel
is proportions summing to 1 (or labelled as counts) and every legend entry of a
population carries its n."""
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.patches import Polygon, StepPatch  # noqa: E402

from analysis import inputs, plotting, report  # noqa: E402
from analysis import response_parameters as rp  # noqa: E402
from analysis import surround_suppression as ss  # noqa: E402
from tests.analysis_helpers import tiny_run  # noqa: E402


@pytest.fixture(scope="module")
def units():
    run = tiny_run()
    data = inputs.load_inputs(run["artefact"], report.NEEDS)
    tables = [{k: np.array(v) for k, v in t.items()} for t in data.units]
    data.artefact.close()
    return tables


@pytest.fixture(scope="module")
def grid():
    run = tiny_run()
    data = inputs.load_inputs(run["artefact"], report.NEEDS)
    grid = {k: np.array(v) for k, v in data.artefact.grid.items()}
    data.artefact.close()
    return grid


def histogram_sums(ax) -> list[float]:
    """Sum of the bin heights of each histogram drawn in ``ax``: step patches
    (``stairs``) and the bar containers ``ax.hist`` makes; a step histogram
    drawn as a bare polygon cannot be checked and fails the test."""
    assert not any(isinstance(p, Polygon) for p in ax.patches), "histogram drawn as a polygon"
    sums = [float(np.sum(p.get_data().values)) for p in ax.patches if isinstance(p, StepPatch)]
    return sums + [float(sum(bar.get_height() for bar in c)) for c in ax.containers if isinstance(c, BarContainer)]


def assert_histograms_read_right(fig):
    """Every panel with a histogram: proportions summing to 1 with that y label,
    or a y label that says count; every legend entry names its n."""
    checked = 0
    for ax in fig.axes:
        sums = histogram_sums(ax)
        if not sums:
            continue
        checked += 1
        ylabel = ax.get_ylabel()
        if "count" not in ylabel:
            assert ylabel.startswith("proportion"), f"histogram panel {ax.get_title()!r} has y label {ylabel!r}"
            assert sums == pytest.approx([1.0] * len(sums)), f"panel {ax.get_title()!r} sums to {sums}"
        legend = ax.get_legend()
        assert legend is not None, f"histogram panel {ax.get_title()!r} has no legend"
        for text in legend.get_texts():
            assert re.search(r"n=\d+|n not given", text.get_text()), f"legend entry without n: {text.get_text()!r}"
    return checked


def tick_labels_shown(ax) -> bool:
    ticks = ax.xaxis.get_major_ticks() + ax.yaxis.get_major_ticks()
    return any(t.label1.get_visible() and t.label1.get_text() for t in ticks)


def empty_messages(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == plotting.EMPTY_PANEL_GID]


def test_the_checker_rejects_a_counts_histogram_without_a_label_and_accepts_proportions():
    fig, (counts, proportions) = plotting.new_figure(2)
    counts.hist([0.1, 0.2, 0.3], bins=[0, 0.5, 1])
    plotting.proportion_histogram(proportions, [0.1, 0.2, 0.7, 5.0], [0, 0.5, 1], "G1")
    proportions.legend()
    with pytest.raises(AssertionError, match="y label"):
        assert_histograms_read_right(fig)
    counts.remove()
    assert assert_histograms_read_right(fig) == 1
    # 3 of the 4 values lie in the bins: 2/3 and 1/3, the fourth is named in the legend
    assert proportions.patches[0].get_data().values == pytest.approx([2 / 3, 1 / 3])
    assert proportions.get_legend().get_texts()[0].get_text() == "G1 (n=3, 1 outside 0-1 not shown)"
    plt.close(fig)


def test_a_model_without_direction_selective_units_says_so_in_the_panels(units, grid):
    no_ds = [dict(t, DSI=np.zeros_like(t["DSI"])) for t in units]
    fig = rp.ds_preference_figure(rp.ds_preferences(no_ds), grid, rp.DS_THRESHOLD)
    top, bottom = fig.axes[0:2], fig.axes[2:4]
    for ax in top:
        assert plotting.is_empty_panel(ax)
        assert empty_messages(ax) == ["no units with DSI > 0.3 in G1, G2, G3"]
        assert not histogram_sums(ax) and not tick_labels_shown(ax) and ax.get_legend() is None
    for ax in bottom:  # the macaque means stay (on the twin axis), the model axis says why it is bare
        assert empty_messages(ax) == ["no units with DSI > 0.3:\nno model means (macaque data only)"]
        assert not ax.lines and not ax.get_yticks().size  # its own axis: no tick is drawn
    annotations = [t.get_text() for t in fig.axes[4].texts]
    assert annotations == ["macaque V1\n(Jones et al. 2001)", "macaque V2\n(Hu et al. 2018)",
                           "macaque MT\n(Bair & Movshon 2004)"]
    plt.close(fig)


def test_direction_selective_histograms_are_proportions_with_n(units, grid):
    preferences = rp.ds_preferences(units, threshold=-1.0)  # every unit counts as DS
    fig = rp.ds_preference_figure(preferences, grid, -1.0)
    assert assert_histograms_read_right(fig) == 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    n_sf = [int(np.isfinite(t["preferred_sf"]).sum()) for t in units]
    assert [int(re.search(r"n=(\d+)", label)[1]) for label in legend] == n_sf
    assert not any(plotting.is_empty_panel(ax) for ax in fig.axes)
    assert not any("outside" in label for label in legend)  # one bin per grid level: every unit is shown
    plt.close(fig)


def test_grid_bin_edges_put_each_level_in_its_own_bin():
    edges = rp.grid_bin_edges([0.25, 0.125, 0.5, 0.375])
    assert edges == pytest.approx([0.0625, 0.1875, 0.3125, 0.4375, 0.5625])


def test_one_group_without_ds_units_is_named_and_the_others_are_drawn(units, grid):
    some = [dict(t, DSI=np.zeros_like(t["DSI"]) if g == 1 else np.ones_like(t["DSI"])) for g, t in enumerate(units)]
    fig = rp.ds_preference_figure(rp.ds_preferences(some), grid, rp.DS_THRESHOLD)
    assert fig.axes[0].get_title() == "no units with DSI > 0.3 in G2"
    assert len(histogram_sums(fig.axes[0])) == 2
    plt.close(fig)


def test_modulation_ratio_panels_are_all_proportions_with_literature_citations(units):
    fig = rp.modulation_ratio_figure([rp.curve_fit_modulation_ratio(t) for t in units])
    assert assert_histograms_read_right(fig) == 3  # G3 has no literature but is proportions too
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends[0][1].startswith("macaque V1 (Mata & Ringach 2005) (n=62, 2 outside 0-2 not shown)")
    assert legends[1][1] == "macaque V2 (Levitt et al. 1994) (n not given)"
    assert len(legends[2]) == 1
    plt.close(fig)


def test_modulation_ratio_panel_without_kept_fits_is_marked_empty(units):
    ratios = [rp.curve_fit_modulation_ratio(t) for t in units]
    ratios[2] = np.full_like(ratios[2], np.nan)
    fig = rp.modulation_ratio_figure(ratios)
    assert empty_messages(fig.axes[2]) == ["no units with a kept F1/F0 fit in G3"]
    assert not histogram_sums(fig.axes[2])
    plt.close(fig)


def test_si_distributions_and_empty_model_panel():
    full = np.array([5.0, 15, 15, 95, np.nan])
    fig = ss.si_distribution_figure({"model": [(np.full(3, np.nan), "G1 full")],
                                     "data": [(full, "mouse V1 control (Vangeneugden et al. 2019)")]})
    assert empty_messages(fig.axes[0]) == ["no units with a size-tuning curve (model)"]
    assert assert_histograms_read_right(fig) == 1
    assert fig.axes[1].patches[0].get_data().values[[0, 1, 9]] == pytest.approx([0.25, 0.5, 0.25])
    plt.close(fig)


def test_report_figure_reads_right_and_cites_the_data(units):
    surround = report.surround_rows(units[0])
    fig = report.report_figure(units, surround)
    assert assert_histograms_read_right(fig) == 2
    ticks = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert "macaque MT (Movshon & Newsome 1996) n=182" in [" ".join(t.split()) for t in ticks]
    plt.close(fig)


def test_report_figure_of_a_group_without_surround_data_is_marked_empty(units):
    table = dict(units[0], surround_suppression_index=np.full(len(units[0]["hidden_unit_index"]), np.nan))
    table.pop("nofeedback_surround_suppression_index")
    fig = report.report_figure([table], report.surround_rows(table))
    assert empty_messages(fig.axes[2]) == ["no G1 units with a size-tuning curve"]
    plt.close(fig)


def test_violins_name_an_empty_sample():
    fig, ax = plotting.new_figure()
    plotting.violins(ax, {"G1": [1.0, 2.0, 3.0], "G2": [np.nan]})
    assert [t.get_text() for t in ax.get_xticklabels()] == ["G1\nn=3", "G2\nn=0"]
    assert empty_messages(ax) == ["no units"]
    plt.close(fig)


def test_rsa_figures_name_sessions_and_mark_an_area_without_sessions():
    import pandas as pd

    from neural_fitting.rsa_report import best_groups, plot_best_scores, plot_group_profiles

    rows = [dict(session=s, area="VISp", model=m, group=g, group_name=f"G{g + 1}", score=0.1 * (g + 1) + 0.01 * s)
            for s in range(3) for m in ("TP", "AE") for g in range(2)]
    table = pd.DataFrame(rows)
    fig = plot_group_profiles(table, ["VISp", "VISl"], ["TP", "AE"])
    visp, visl = fig.axes
    assert [t.get_text() for t in visp.get_legend().get_texts()] == ["TP (n=3 sessions)", "AE (n=3 sessions)"]
    assert empty_messages(visl) == ["no session with enough units in VISl"]
    assert tick_labels_shown(visp)  # the shared y axis keeps its ticks on the panel with data
    plt.close(fig)
    fig = plot_best_scores(best_groups(table), table, ["VISp", "VISl"], ["TP", "AE"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["VISp (V1)\nn=3 sessions", "VISl (lateromedial, ventral)\nn=0 sessions"]
    assert empty_messages(fig.axes[0]) == ["no sessions"]
    plt.close(fig)


def test_range_note_states_how_flat_a_curve_is():
    fig, ax = plotting.new_figure()
    ax.plot([0, 1, 2], [1.0, 1.002, 1.01])
    assert plotting.range_note(ax, [1.0, 1.002, 1.01]) == pytest.approx(100 * 0.01 / 1.01)
    assert [t.get_text() for t in ax.texts] == ["range 0.99% of max"]
    assert np.isnan(plotting.range_note(ax, [np.nan, 0.0]))  # nothing positive: no note
    plt.close(fig)
