"""The pipeline's guards: one writer per artefact (a lock, or --wait), a non-zero
exit when the artefact is not complete, a complete artefact never replaced by a
less complete one, and one-line errors for an artefact that cannot be written."""
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import h5py
import pytest

from test_vphys_pipeline import TINY, TINY_OPTIONS, _checkpoint, _part_ids
from utils import InputError, UserInputError
from virtual_physiology import ArtefactError
from virtual_physiology.artefact import STAGES, VirtualPhysiology
from virtual_physiology.pipeline import artefact_lock, lock_path, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """A checkpoint and its complete artefact."""
    base = tmp_path_factory.mktemp("vphys_reliability")
    weights = _checkpoint(base / "run", seed=0)
    artefact = base / "done.h5"
    main([str(weights), str(artefact), *TINY])
    return weights, artefact


def test_a_second_pipeline_on_a_held_artefact_names_the_holder_and_writes_nothing(complete, tmp_path):
    weights, _ = complete
    artefact = tmp_path / "held.h5"
    with artefact_lock(artefact):
        with pytest.raises(InputError, match=rf"held.h5 is being written by pid {os.getpid()} on .*, started 20"):
            main([str(weights), str(artefact), *TINY])
    assert not artefact.exists() and not artefact.with_name("held.h5.parts").exists()


def test_wait_queues_behind_the_holder_and_then_completes(complete, tmp_path):
    weights, _ = complete
    artefact = tmp_path / "queued.h5"
    held, release = threading.Event(), threading.Event()

    def hold():
        with artefact_lock(artefact):
            held.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(900), "waited 900 s for the holder thread to take the lock"
    threading.Timer(1.0, release.set).start()
    try:
        main([str(weights), str(artefact), "--wait", *TINY])  # blocks until the holder lets go
    finally:
        release.set()  # the holder never outlives a failed test
    holder.join()
    assert VirtualPhysiology.load(artefact).stages == list(STAGES)


def test_two_run_bash_at_once_with_wait_both_succeed_with_one_complete_artefact(complete, tmp_path):
    weights, _ = complete
    artefact = tmp_path / "both.h5"
    procs = [subprocess.Popen(["bash", str(ROOT / "run.bash"), str(weights), str(artefact), "--wait", *TINY],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1")) for _ in range(2)]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    assert VirtualPhysiology.load(artefact).stages == list(STAGES)
    assert not artefact.with_name("both.h5.parts").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] and not lock_path(artefact).exists()


def test_a_stage_that_would_drop_later_stages_keeps_the_complete_artefact_and_fails(complete, tmp_path):
    weights, done = complete
    artefact = tmp_path / "kept.h5"
    shutil.copy(done, artefact)
    before = _part_ids(artefact)
    with pytest.raises(UserInputError, match="kept.h5 is not complete .*rerun bash run.bash"):
        main([str(weights), str(artefact), "--force", *TINY], stage="rwa")  # gabor, surround ... read the old RWA
    assert _part_ids(artefact) == before and VirtualPhysiology.load(artefact).stages == list(STAGES)
    main([str(weights), str(artefact), *TINY])  # the full run then brings every stage up to date
    after = _part_ids(artefact)
    assert after["rwa"] != before["rwa"] and after["gratings"] == before["gratings"]
    assert VirtualPhysiology.load(artefact).stages == list(STAGES)


def test_an_artefact_under_a_file_is_one_line(complete, tmp_path):
    weights, _ = complete
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, so the artefact cannot go under it"):
        main([str(weights), str(blocker / "out.h5"), *TINY])
    assert blocker.read_text() == "x"


def test_an_artefact_on_a_full_disk_is_one_line_and_leaves_no_temporary(complete, tmpfs):
    mount = tmpfs("size=64k")
    weights, _ = complete
    with pytest.raises(InputError, match=r"time courses need .* MiB but .* MiB free: free space"):
        main([str(weights), str(mount / "full.h5"), *TINY])
    leftovers = [p.name for p in mount.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and not (mount / "full.h5").exists()
    for part in (mount / "full.h5.parts").glob("*.h5"):  # finished stages are whole files
        with h5py.File(part, "r") as f:
            json.loads(f.attrs["part"])


def test_the_lock_file_sits_beside_the_artefact_and_is_released_and_removed(complete, tmp_path):
    artefact = tmp_path / "x.h5"
    with artefact_lock(artefact):
        assert lock_path(artefact).parent == tmp_path and str(os.getpid()) in lock_path(artefact).read_text()
    assert not lock_path(artefact).exists()  # a finished run leaves no lock file
    with artefact_lock(artefact):  # released: taken again at once
        pass


def test_a_lock_whose_file_was_deleted_or_replaced_is_not_taken_as_the_artefacts_lock(tmp_path):
    """A waiter blocks on the file it opened; when the holder deletes that file and
    lets go, the waiter's lock is of a deleted file and must be taken again."""
    from utils import FileLock

    path = tmp_path / ".x.h5.lock"
    lock = FileLock(path)  # the artefact's lock (artefact_lock) and the run folder's
    with open(path, "a+") as handle:
        assert lock._names(handle)
        path.unlink()
        assert not lock._names(handle)  # deleted
        path.write_text("")
        assert not lock._names(handle)  # another file now has the name


def test_the_pipeline_says_what_it_will_cost_before_it_runs_and_numbers_each_stage(complete, tmp_path):
    from virtual_physiology.pipeline import Pipeline

    weights, _ = complete
    lines = []
    Pipeline(weights, tmp_path / "costed.h5", options=TINY_OPTIONS).run(log=lines.append)
    assert lines[0].startswith(f"all {len(STAGES)} stages to run for ") and " min on 2 quiet cores" in lines[0]
    assert " GB (scaled from 5.4 min and 4.2 GB at 2,400 units)" in lines[0]
    assert f"[rwa] running (1 of {len(STAGES)})" in lines


def test_expected_cost_scales_with_hidden_units():
    from virtual_physiology.pipeline import expected_cost

    assert "about 5.4 min" in expected_cost(2400, 8) and "about 4.2 GB" in expected_cost(2400, 8)
    assert "about 2.7 min" in expected_cost(1200, 8) and "about 2.1 GB" in expected_cost(1200, 8)
    assert expected_cost(1200, 3).startswith("3 of ")


def test_run_bash_on_a_folder_with_only_an_interrupted_state_says_how_to_resume_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "interrupted_state.pt").write_bytes(b"")
    with pytest.raises(InputError, match=rf"only the state of an interrupted training: finish or continue it "
                                             rf"with python submit_training_job.py --path {re.escape(str(run))}$"):
        main([str(run)])


@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "4294967296"])
def test_a_seed_out_of_range_is_refused_before_any_stage_runs(complete, tmp_path, seed):
    weights, _ = complete
    artefact = tmp_path / "seed.h5"
    with pytest.raises(UserInputError, match=rf"--seed must be between 0 and 4294967295, got {seed}"):
        main([str(weights), str(artefact), *TINY, "--seed", seed])
    assert not list(tmp_path.iterdir())


def test_run_bash_refuses_a_bad_seed_in_one_line_before_any_stage(complete, tmp_path):
    weights, _ = complete
    done = subprocess.run(["bash", str(ROOT / "run.bash"), str(weights), str(tmp_path / "a.h5"), *TINY,
                           "--seed", "-1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--seed" in done.stderr, done.stderr
    assert "[rwa]" not in done.stdout and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Non-finite results: the model's responses must be finite for every unit a stage probed
# ---------------------------------------------------------------------------------------------
def overflowing_checkpoint(folder):
    """Finite weights (load_model accepts them) whose responses overflow to inf, as one
    flipped exponent bit in the recurrent biases of a corrupted copy gives."""
    from safetensors.torch import load_file, save_file

    from test_vphys_pipeline import CONFIG

    weights = _checkpoint(folder, seed=0)
    tensors = load_file(str(weights))
    tensors["bias_hh"][:] = 1.8e38
    save_file(tensors, str(weights), metadata={"config": json.dumps(CONFIG), "epoch": "1"})
    return weights


def test_a_model_with_infinite_responses_stops_at_the_first_stage_storing_nothing(tmp_path):
    weights = overflowing_checkpoint(tmp_path / "run")
    artefact = tmp_path / "inf.h5"
    with pytest.raises(UserInputError, match=r"stage rwa: rwa_total_response holds 30 non-finite values for the 30 "
                                             r"units it probed \(first: unit 0\).*nothing of the stage was stored"):
        main([str(weights), str(artefact), *TINY])
    assert not artefact.exists() and not list(artefact.with_name("inf.h5.parts").glob("*.h5"))


def test_non_finite_rule_measured_responses_of_probed_units_only(tmp_path):
    """Statistics may be NaN (a silent unit's OSI is 0/0) or inf (|r| = 1 gives z = inf), and units a
    stage did not probe hold NaN; the model's responses for the probed units must be finite."""
    import numpy as np

    from virtual_physiology.fields import write_per_unit
    from virtual_physiology.stages import NonFiniteResults, Stage

    stage = Stage(name="toy", summary="", run=None, writes=dict(response="(n_hidden, 3)", OSI="(n_hidden,)"),
                  measured=("response",))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ok = f.create_group("ok")
        write_per_unit(ok, dict(response=np.ones((2, 3)), OSI=np.array([np.nan, np.inf])), 5, units=[1, 3])
        stage.check_written(ok)  # NaN rows of units 0, 2, 4 are fill; the statistics are not judged
        for bad_value, what in ((np.nan, "NaN"), (np.inf, "inf")):
            bad = f.create_group(f"bad_{what}")
            response = np.ones((2, 3))
            response[1, 2] = bad_value
            write_per_unit(bad, dict(response=response, OSI=np.zeros(2)), 5, units=[1, 3])
            with pytest.raises(NonFiniteResults, match=r"stage toy: response holds 1 non-finite value for the 2 "
                                                       r"units it probed \(first: unit 3\)"):
                stage.check_written(bad)


# ---------------------------------------------------------------------------------------------
# Flipped bytes in an artefact: every dataset carries HDF5's Fletcher-32 checksum, the metadata
# its SHA-256; reading a damaged one is one line
# ---------------------------------------------------------------------------------------------
def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_dataset_of_an_artefact_is_checksummed(complete):
    _, artefact = complete
    with h5py.File(artefact, "r") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        assert datasets and all(d.fletcher32 for d in datasets), [d.name for d in datasets if not d.fletcher32]


@pytest.mark.parametrize("field", ["gratings/OSI", "rwa/kept", "gratings/grating_responses", "connectivity/weights"])
def test_a_flipped_byte_in_a_field_is_one_line_when_read(complete, tmp_path, field):
    from virtual_physiology.results import VirtualPhysiology as Loaded

    _, artefact = complete
    copy = Path(shutil.copy(artefact, tmp_path / "flipped.h5"))
    with h5py.File(copy, "r") as f:
        offset = f[field].id.get_chunk_info(0).byte_offset
    flip_byte(copy, offset + 5)
    stage, name = field.split("/")
    with Loaded.load(copy) as vp, pytest.raises(ArtefactError) as err:
        if name == "grating_responses":
            vp.grating_responses(0)
        elif name == "kept":
            vp.array("OSI", kept_only=True)
        else:
            vp.arrays(stage)[name]
    message = str(err.value)
    assert "\n" not in message and f"/{field} fails its checksum" in message and "bash run.bash" in message, message


def test_flipped_metadata_is_one_line(complete, tmp_path):
    _, artefact = complete
    copy = Path(shutil.copy(artefact, tmp_path / "flipped.h5"))
    data = copy.read_bytes()
    flip_byte(copy, data.index(b'"created": "') + len(b'"created": "') + 3)  # a digit of the year: still JSON
    with pytest.raises(ArtefactError, match=r"flipped.h5: its metadata fails its checksum, so the file is corrupt: "
                                             r"make it again with bash run.bash"):
        VirtualPhysiology.load(copy)


# ---------------------------------------------------------------------------------------------
# Issue 28: a truncated artefact, and a name too long for the artefact's temporary files
# ---------------------------------------------------------------------------------------------
def test_a_truncated_artefact_is_called_truncated_and_left_as_it_is(complete, tmp_path):
    weights, done = complete
    artefact = tmp_path / "cut.h5"
    artefact.write_bytes(done.read_bytes()[:done.stat().st_size // 2])
    before = artefact.read_bytes()
    match = rf"cut.h5 is truncated: it holds {len(before):,} of the {done.stat().st_size:,} bytes HDF5 expects"
    with pytest.raises(ArtefactError, match=match + r" .*copy it again, or move it away and rerun bash run.bash"):
        VirtualPhysiology.load(artefact)
    with pytest.raises(InputError, match=match):
        main([str(weights), str(artefact), *TINY])
    assert artefact.read_bytes() == before and not artefact.with_name("cut.h5.parts").exists()


def test_an_artefact_name_too_long_for_its_temporaries_is_refused_before_any_stage(complete, tmp_path):
    weights, _ = complete
    artefact = tmp_path / ("a" * 241 + ".h5")  # fits the file system, not with the temporaries' decorations
    with pytest.raises(InputError, match=r"artefact name a+\.h5 is too long: .* at most \d+ characters fit"):
        main([str(weights), str(artefact), *TINY])
    assert list(tmp_path.iterdir()) == []
