"""tools/timings.py: the table every `make test` ends with."""

from __future__ import annotations

import timings


def test_the_table_nests_stages_lines_and_steps_and_says_whether_the_budget_held(tmp_path):
    log = tmp_path / "timings.tsv"
    log.write_text(
        "stage 1 / checks / lint\t100\t190\t0\n"
        "stage 1 / checks\t100\t400\t0\n"
        "stage 1\t100\t500\t0\n"
        "stage 2 / faults\t500\t2000\t1\n"
        "stage 2\t500\t2100\t1\n"
    )
    junit = tmp_path / "junit"
    junit.mkdir()
    (junit / "deploy.xml").write_text(
        '<testsuites><testsuite><testcase classname="test_live" name="test_a" time="12.5"/>'
        '<testcase classname="test_live" name="test_b" time="99.0"/></testsuite></testsuites>'
    )
    lines = timings.table(timings.read_timings(log), timings.slowest_tests(junit), 30)
    text = "\n".join(lines)
    assert "  stage 1" in text and "      lint" in text and "    checks" in text
    assert "faults" in text and "FAILED (1)" in text
    assert "total" in text and "33m20.0s" in text and "OVER the 30-minute budget" in text
    assert lines[-2].split() == ["99.0s", "deploy", "test_live::test_b"]


def test_no_records_yet_is_a_header_only():
    assert timings.table([], [], 40) == ["== Where the time went (budget 40 min)"]
