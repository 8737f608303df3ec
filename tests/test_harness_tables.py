"""Result tables survive damage: cut and garbage lines are quarantined (never lost, never counted
as recorded cells), unreadable tables name the file and the line, reads are typed, killed writers
leave no litter that outlives the next append, tables keep mode 0644 under umask 022, concurrent
writers under SIGKILL lose no reported row, and an unwritable results directory is refused."""
from __future__ import annotations

import csv
import io
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import pandas as pd
import pytest
from pandas.api.types import is_integer_dtype, is_numeric_dtype

from streamindex.harness import results, schema

from .harness_helpers import FIXTURE_RESULTS, REPO

# A child process that imports the table module without torch (the package __init__ imports it).
CHILD_PRELUDE = f"""
import os, sys, types
for name, sub in (("streamindex", ""), ("streamindex.harness", "/harness")):
    mod = types.ModuleType(name)
    mod.__path__ = [{str(REPO)!r} + "/streamindex" + sub]
    sys.modules[name] = mod
from streamindex.harness import results, schema
os.umask(0o022)
def row(S):
    r = dict(experiment="bench", path="stream", model="tiny", B=1, S=S, H=4, D=16, topk=8, status="ok",
             time_s=0.5, date="2026-01-01", sweep_id="stress", command="cmd S=%d" % S)
    r["cell_id"] = schema.cell_id(r)
    return r
"""


def _row(S, status="ok", path="stream", **kw) -> dict:
    r = dict(experiment="bench", block="b", kind="indexer", hardware="cpu", device="cpu", path=path, model="tiny",
             B=1, S=S, T=S // 4, H=4, D=16, topk=8, ratio=4, offset=0, dtype="fp32", seed=0, measure_time=True,
             measure_memory=True, measure_recall=False, measure_overlap=False, status=status, reason="",
             time_s=0.001 * S, date=f"2026-01-01T00:00:{S % 60:02d}+00:00", sweep_id="s1",
             command=f"python -m experiments.cell experiment=bench path={path} S={S}")
    r.update(kw)
    r["cell_id"] = schema.cell_id(r)
    return r


def _line(path, values: dict) -> bytes:
    """One CSV line in the column order of the table at ``path``, from ``values`` (cell_id as given)."""
    header = path.read_bytes().split(b"\n", 1)[0].decode().split(",")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(["" if values.get(c) is None else values[c] for c in header])
    return buf.getvalue().encode()


def _table(tmp_path):
    """A table of rows S = 1 (a reason with a comma, quotes and a newline: lines 2-3), 2 (line 4),
    3 (line 5)."""
    path = tmp_path / "res" / "cpu" / "bench.csv"
    results.append_rows(path, [_row(1, reason='said "no",\ntwice'), _row(2), _row(3)])
    return path


def _no_warnings(fn, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn(*args)
    damage = [str(w.message) for w in caught if issubclass(w.category, results.DamagedRowsWarning)]
    assert not damage, damage
    return out


def _cut_inside_cell_id(line: bytes) -> int:
    return line.index(b"experiment=bench|") + 30


def _cut_before_status(line: bytes) -> int:
    fields = next(csv.reader([line.decode()]))
    return len(",".join(fields[:schema.COLUMNS.index("status")])) + 1


def _cut_inside_command(line: bytes) -> int:
    return len(line) - 3


@pytest.mark.parametrize("cut", [_cut_inside_cell_id, _cut_before_status, _cut_inside_command])
def test_a_cut_last_line_is_quarantined_and_its_cell_runs_again(tmp_path, cut):
    path = _table(tmp_path)
    data = path.read_bytes()
    last = data.rstrip(b"\n").rsplit(b"\n", 1)[1]
    damaged = data[: len(data) - 1 - len(last) + cut(last)]
    path.write_bytes(damaged)
    cut_line = damaged.rsplit(b"\n", 1)[1]
    qpath = tmp_path / "res" / "cpu" / "bench.csv.quarantine"

    with pytest.warns(results.DamagedRowsWarning, match="line 5: cut") as rec:
        df = results.read_table(path)
    assert str(qpath) in str(rec[0].message)
    assert list(df["S"]) == [1, 2] and is_integer_dtype(df["S"])
    assert df["reason"].iloc[0] == 'said "no",\ntwice'                    # the multi-line record survived
    cell3 = _row(3)["cell_id"]
    assert not ((df["cell_id"] == cell3) & df["status"].isin(schema.DONE_STATUSES)).any()   # so it reruns
    assert set(results.current_rows(df)["cell_id"]) == {_row(1)["cell_id"], _row(2)["cell_id"]}
    assert path.read_bytes() == damaged                                   # reading changes nothing
    assert b"\n" + cut_line + b"\n" in qpath.read_bytes()

    with pytest.warns(results.DamagedRowsWarning, match="moved to"):
        results.append_rows(path, [_row(3)])                              # the rerun records the cell
    df = _no_warnings(results.read_table, path)
    assert list(df["S"]) == [1, 2, 3] and path.read_bytes().endswith(b"\n")
    assert qpath.read_bytes().count(b"\n" + cut_line + b"\n") == 1        # copied once, not once per event


GARBAGE = {
    "random bytes": lambda p: b"\x8f\xffq\x03\xc3(garbage\xfe\xfe",
    "invalid utf-8 in a field": lambda p: _line(p, _row(9)).replace(b"stream", b"str\xffeam"),
    "NUL run of a filled disk": lambda p: b"\x00" * 64,
    "too many fields": lambda p: _line(p, _row(9)) + b",surplus,fields",
    "too few fields": lambda p: b"bench,b,indexer,cpu",
    "status not a status": lambda p: _line(p, dict(_row(9), status="okay")),
    "text in a numeric column": lambda p: _line(p, dict(_row(9), time_s="fast")),
    "no cell_id": lambda p: _line(p, dict(_row(9), cell_id="")),
    "cell_id of another configuration": lambda p: _line(p, dict(_row(9), S=7)),
    "a stray quote": lambda p: b'bench,"b,indexer',
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_a_garbage_line_is_quarantined_and_the_rows_around_it_survive(tmp_path, kind):
    path = _table(tmp_path)
    lines = path.read_bytes().split(b"\n")
    bad = GARBAGE[kind](path)
    path.write_bytes(b"\n".join(lines[:3] + [bad] + lines[3:]))         # between rows S=1 and S=2: line 4
    with pytest.warns(results.DamagedRowsWarning, match=r"line 4: ") as rec:
        df = results.read_table(path)
    assert "bench.csv.quarantine" in str(rec[0].message)
    assert list(df["S"]) == [1, 2, 3]
    assert is_integer_dtype(df["S"]) and is_numeric_dtype(df["time_s"])
    assert all(isinstance(s, str) for s in df["status"])
    assert b"\n" + bad + b"\n" in results.quarantine_path(path).read_bytes()
    with pytest.warns(results.DamagedRowsWarning):
        results.append_rows(path, [_row(4)])
    assert b"\n" + bad + b"\n" not in path.read_bytes()
    assert list(_no_warnings(results.read_table, path)["S"]) == [1, 2, 3, 4]


@pytest.mark.parametrize("content", [
    pytest.param(lambda h: h[:40], id="header cut"),
    pytest.param(lambda h: h.replace(b"status", b"st\xffatus") + b"\n", id="header not utf-8"),
    pytest.param(lambda h: b"a,b,c\n1,2,3\n", id="not a results table"),
    pytest.param(lambda h: b"\x00" * 4096, id="all NUL"),
])
def test_a_table_that_cannot_be_read_names_the_file_and_the_line(tmp_path, content):
    path = _table(tmp_path)
    header = path.read_bytes().split(b"\n", 1)[0]
    path.write_bytes(content(header))
    before = path.read_bytes()
    with pytest.raises(results.TableReadError, match=r"bench\.csv, line 1: ") as err:
        results.read_table(path)
    assert err.value.path == path and err.value.line == 1
    with pytest.raises(results.TableReadError):
        results.append_rows(path, [_row(4)])
    assert path.read_bytes() == before                                    # never overwritten


def test_a_table_path_that_is_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "bench.csv").mkdir()
    with pytest.raises(results.TableReadError, match="bench.csv: cannot be read"):
        results.read_table(tmp_path / "bench.csv")


def test_reads_of_damaged_tables_stay_typed_and_the_report_builds(tmp_path):
    """``make figures`` on tables with bad rows: the current rows are those of the clean tables,
    typed, and the report (figures included) builds."""
    from experiments.report import main as report_main

    clean = results.load_results(FIXTURE_RESULTS, "h200")
    hw = tmp_path / "h200"
    hw.mkdir()
    for name in clean:
        src = FIXTURE_RESULTS / "h200" / f"{name}.csv"
        header, first = src.read_bytes().split(b"\n")[:2]
        columns = header.decode().split(",")
        fields = next(csv.reader([first.decode()]))
        no_status = dict(zip(columns, fields), status="")
        text_in_S = dict(zip(columns, fields), S="many")
        garbage = [_line(src, no_status), b"\xff\x00\x01", _line(src, text_in_S), first[:-20]]
        (hw / f"{name}.csv").write_bytes(src.read_bytes() + b"\n".join(garbage))
    with pytest.warns(results.DamagedRowsWarning):
        damaged = results.load_results(tmp_path, "h200")
    assert set(damaged) == set(clean)
    for name, df in damaged.items():
        pd.testing.assert_frame_equal(df, clean[name], check_dtype=False)
        for col in results.NUMERIC_COLUMNS:
            if col in df and df[col].notna().any():
                assert is_numeric_dtype(df[col]), (name, col)
        assert all(isinstance(v, str) for v in df["status"])
    with pytest.warns(results.DamagedRowsWarning):
        assert report_main([f"results_dir={tmp_path}", "hardware=h200"]) == 0
    assert (hw / "REPORT.md").exists()


def test_recorded_tables_and_earlier_cell_ids_read_without_damage():
    """The committed tables and the fixtures (whose cell ids predate the ``fail_inject`` key field)
    are read whole: the cell-id check accepts ids recorded under an earlier key list."""
    tables = sorted((REPO / "results").glob("*/*.csv")) + sorted(FIXTURE_RESULTS.glob("*/*.csv"))
    assert tables
    for path in tables:
        df = _no_warnings(results.read_table, path)
        assert len(df) == len(pd.read_csv(path, low_memory=False)), path


def test_cell_ids_of_another_scheme_are_kept_not_quarantined(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1), _row(2), _row(3)])
    text = path.read_text()
    for S in (1, 2, 3):
        text = text.replace(_row(S)["cell_id"], _row(S)["cell_id"] + "|launcher=basic")
    path.write_text(text)
    with pytest.warns(results.DamagedRowsWarning, match="kept as recorded"):
        assert list(results.read_table(path)["S"]) == [1, 2, 3]
    assert not results.quarantine_path(path).exists()


def test_append_refuses_rows_it_could_not_read_back(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1)])
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"rows\[1\]\['status'\] = 'fine'"):
        results.append_rows(path, [_row(2), dict(_row(3), status="fine")])
    with pytest.raises(ValueError, match=r"rows\[0\]\['time_s'\] = 'fast' is not a number"):
        results.append_row(path, dict(_row(2), time_s="fast"))
    with pytest.raises(ValueError, match=r"rows\[0\]\['cell_id'\]"):
        results.append_row(path, dict(_row(2), S=5))
    with pytest.raises(TypeError, match=r"rows\[0\] must be a mapping"):
        results.append_rows(path, [("S", 2)])
    assert path.read_bytes() == before


def test_a_flag_appended_under_an_empty_column_reads_back_as_recorded(tmp_path):
    path = tmp_path / "t.csv"
    bare = dict(experiment="bench", path="stream", S=1, status="ok")
    results.append_rows(path, [dict(bare, cell_id=schema.cell_id(bare))])   # measure_* columns empty
    results.append_rows(path, [_row(2)])                                  # measure_time=True, not 1.0
    df = _no_warnings(results.read_table, path)
    assert list(df["S"]) == [1, 2] and str(df["measure_time"].iloc[1]) == "True"


def test_text_columns_read_back_as_written(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1, cuda_version="12.10", git_commit="0123456", hostname="42")])
    df = _no_warnings(results.read_table, path)
    assert (df["cuda_version"].iloc[0], df["git_commit"].iloc[0], df["hostname"].iloc[0]) == ("12.10", "0123456", "42")


def test_stale_temporaries_are_removed_under_the_lock(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1)])
    stale = [tmp_path / "t.csv.0123456789ab.tmp", tmp_path / "t.csv.k2_x9q1z.tmp"]     # ours, mkstemp's
    others = [tmp_path / "u.csv.0123456789ab.tmp", tmp_path / "t.csv.quarantine"]
    for p in stale + others:
        p.write_text("x")
    results.append_rows(path, [_row(2)])
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)


def test_a_writer_killed_mid_append_leaves_the_table_whole_and_the_next_append_cleans_up(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1)])
    before = path.read_bytes()
    child = CHILD_PRELUDE + f"""
import time
os.fsync = lambda fd: time.sleep(60)        # stall with the temporary written and the lock held
results.append_row({str(path)!r}, row(2))
"""
    proc = subprocess.Popen([sys.executable, "-c", child])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("t.csv.*.tmp")) and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
        tmps = list(tmp_path.glob("t.csv.*.tmp"))
        assert tmps, "the child never wrote its temporary"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert path.read_bytes() == before                                    # not torn, not changed
    results.append_rows(path, [_row(3)])
    assert not list(tmp_path.glob("*.tmp"))
    assert list(_no_warnings(results.read_table, path)["S"]) == [1, 3]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_tables_and_side_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = tmp_path / "res" / "cpu" / "t.csv"
        results.append_rows(path, [_row(1)])
        assert path.stat().st_mode & 0o777 == mode
        os.chmod(path, 0o600)                                             # as mkstemp left tables before
        path.write_bytes(path.read_bytes() + b"garbage")
        with pytest.warns(results.DamagedRowsWarning):
            results.append_rows(path, [_row(2)])
        assert path.stat().st_mode & 0o777 == mode
        assert results.quarantine_path(path).stat().st_mode & 0o777 == mode
        results.mirror_table(path, tmp_path / "mirror", "cpu")
        for name in ("t.csv", "t.csv.quarantine"):
            mirrored = tmp_path / "mirror" / "cpu" / name
            assert mirrored.read_bytes() == path.with_name(name).read_bytes()
            assert mirrored.stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)


def test_check_writable(tmp_path):
    folder = results.check_writable(tmp_path / "res", "cpu")
    assert folder == tmp_path / "res" / "cpu" and folder.is_dir() and not list(folder.iterdir())
    (tmp_path / "file").write_text("x")
    with pytest.raises(results.ResultsDirNotWritable, match=str(tmp_path / "file" / "cpu")) as err:
        results.check_writable(tmp_path / "file", "cpu")
    assert isinstance(err.value, OSError)


def test_check_writable_proves_it_with_a_probe_file(tmp_path, monkeypatch):
    def refuse(folder, prefix, suffix):
        raise PermissionError(13, "Permission denied", str(folder / prefix))

    monkeypatch.setattr(results, "_create_exclusive", refuse)              # as a read-only directory does
    with pytest.raises(results.ResultsDirNotWritable, match=r"res/cpu cannot be written \(Permission denied\)"):
        results.check_writable(tmp_path / "res", "cpu")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_check_writable_refuses_a_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    (ro / "cpu").mkdir(parents=True)
    os.chmod(ro / "cpu", 0o555)
    try:
        with pytest.raises(results.ResultsDirNotWritable, match="ro/cpu cannot be written"):
            results.check_writable(ro, "cpu")
    finally:
        os.chmod(ro / "cpu", 0o755)


def test_merge_never_shrinks_dedupes_and_cleans_a_damaged_destination(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    results.append_rows(src / "t.csv", [_row(1), _row(2)])
    results.append_rows(dst / "t.csv", [_row(1), _row(1)])               # a duplicate already there
    data = (dst / "t.csv").read_bytes()
    (dst / "t.csv").write_bytes(data + data.split(b"\n")[1][:30])         # and a cut line
    with pytest.warns(results.DamagedRowsWarning, match="moved to"):
        assert results.merge_tables(src, dst) == {"t.csv": (2, 3)}
    assert results.merge_tables(src, dst) == {"t.csv": (3, 3)}
    df = _no_warnings(results.read_table, dst / "t.csv")
    assert sorted(df["S"]) == [1, 1, 2] and results.quarantine_path(dst / "t.csv").exists()
    with pytest.raises(ValueError, match="same table"):
        results.merge_tables(dst, dst)


def test_merge_results_command(tmp_path, capsys):
    from experiments.merge_results import main

    results.append_rows(tmp_path / "src" / "t.csv", [_row(1), _row(2)])
    assert main([f"src={tmp_path / 'src'}", f"dst={tmp_path / 'dst'}"]) == 0
    assert "t.csv: 0 -> 2 rows" in capsys.readouterr().out
    (tmp_path / "dst" / "t.csv").write_bytes(b"\xff\xfe")
    assert main([f"src={tmp_path / 'src'}", f"dst={tmp_path / 'dst'}"]) == 1
    assert "dst/t.csv, line 1: the header line is cut" in capsys.readouterr().err
    assert main([f"src={tmp_path / 'nowhere'}", f"dst={tmp_path / 'dst'}"]) == 2
    assert main([f"src={tmp_path / 'src'}"]) == 2


def test_current_rows_pick_the_best_status_then_the_latest(tmp_path):
    path = tmp_path / "t.csv"
    results.append_rows(path, [_row(1, "error", date="2026-03"), _row(1, "ok", date="2026-01", time_s=1.0),
                               _row(1, "ok", date="2026-02", time_s=2.0), _row(2, "skipped", date="2026-01"),
                               _row(2, "oom", date="2025-01")])
    cur = results.current_rows(results.read_table(path)).set_index("S")
    assert cur.loc[1, "time_s"] == 2.0 and cur.loc[2, "status"] == "oom"


def test_concurrent_writers_under_sigkill_lose_no_reported_row(tmp_path):
    path = tmp_path / "t.csv"
    writer = CHILD_PRELUDE + f"""
w = int(sys.argv[1])
for j in range(12):
    results.append_row({str(path)!r}, row(1000 * w + j))
    print(1000 * w + j, flush=True)
"""
    old_umask = os.umask(0o022)
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(w)], stdout=subprocess.PIPE, text=True)
             for w in range(6)]
    rng = random.Random(0)
    victims = procs[:3]
    try:
        for proc in victims:
            time.sleep(rng.uniform(0.6, 1.2))
            proc.send_signal(signal.SIGKILL)
        outs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(proc.returncode == 0 for proc in procs[3:])
    reported = {int(s) for out in outs for s in out.split()}
    assert len(reported) >= 36
    try:
        results.append_rows(path, [_row(99999)])                          # the next append cleans up
    finally:
        os.umask(old_umask)
    df = _no_warnings(results.read_table, path)
    assert reported <= set(df["S"]) and df["cell_id"].is_unique
    assert not list(tmp_path.glob("*.tmp")) and path.stat().st_mode & 0o777 == 0o644
