"""A team's deploy metrics from audit lines: each figure checked against a history worked out by hand."""

from __future__ import annotations

from ansible_collections.asgi.deploy.plugins.plugin_utils import metrics, report_html


def line(run, event, time, host="web1", **more):
    return {"run": run, "event": event, "time": time, "host": host, **more}


# Week of 2026-11-02: r1 deploys 1-a (ok), r2 deploys 2-b (fails on web1, reverted), r3 deploys 2-b (ok),
# r4 rolls back to 1-a two hours later (so r3 counts as a failed change), r5 deploys 3-c next week (ok).
HISTORY = [
    line("r1", "lock", "2026-11-02T10:00:00Z"),
    line("r1", "deploy", "2026-11-02T10:01:00Z", to="1-a", result="success"),
    line("r1", "deploy", "2026-11-02T10:02:00Z", host="web2", to="1-a", result="success"),
    line("r1", "unlock", "2026-11-02T10:03:00Z", host="web2"),
    line("r2", "lock", "2026-11-03T10:00:00Z"),
    line("r2", "deploy", "2026-11-03T10:05:00Z", to="2-b", result="reverted"),
    line("r3", "lock", "2026-11-04T09:00:00Z"),
    line("r3", "deploy", "2026-11-04T09:04:00Z", to="2-b", result="success"),
    line("r3", "deploy", "2026-11-04T09:06:00Z", host="web2", to="2-b", result="success"),
    line("r4", "lock", "2026-11-04T11:00:00Z"),
    line("r4", "rollback", "2026-11-04T11:01:00Z", to="1-a", result="success"),
    line("r4", "rollback", "2026-11-04T11:02:00Z", host="web2", to="1-a", result="success"),
    line("r5", "lock", "2026-11-10T10:00:00Z"),
    line("r5", "deploy", "2026-11-10T10:10:00Z", to="3-c", result="success"),
    line("", "force_unlock", "2026-11-10T11:00:00Z"),  # no run: not a run
    line("r6", "lock", "2026-11-11T10:00:00Z"),  # locked, changed nothing: not a deploy
]
RELEASES = {"1-a": {"commit_time": "2026-11-02T08:03:00Z"}, "3-c": {"commit_time": "2026-11-10T09:10:00Z"}}


def test_the_figures_of_a_history_worked_out_by_hand():
    f = metrics.metrics(HISTORY, RELEASES, period="week", window_h=24)
    assert (f["deploys"], f["rollbacks"], f["periods"]) == (4, 1, 2)
    assert f["deployment_frequency"] == 1.5  # r1, r3, r5 succeeded, over two weeks
    assert f["change_failure_rate"] == 0.5  # r2 failed, r3 was rolled back within a day: 2 of 4
    # 1-a: committed 08:03, first deployed by r1 ending 10:03 (2 h); 3-c: 09:10 to r5's end 10:10 (1 h).
    assert f["lead_time_s"] == {"median": 5400.0, "p90": 6840.0, "count": 2}
    assert f["rollback_frequency"] == 0.5
    # r2 (ended 10:05 on the 3rd) was restored by r3 (ended 09:06 on the 4th): 23 h 01 min;
    # r3 (ended 09:06) was undone and restored by r4 (ended 11:02): 1 h 56 min.
    assert f["time_to_restore_s"]["median"] == (82860 + 6960) / 2
    assert f["deploy_duration_s"] == {"median": 330.0, "p90": 528.0}  # 3, 5, 6 and 10 minutes
    assert [t["period"] for t in f["trend"]] == ["2026-11-02", "2026-11-09"]
    assert f["trend"][0] == {"period": "2026-11-02", "deploys": 2, "rollbacks": 1, "median_duration_s": 300.0}


def test_a_rollback_undoes_only_the_last_deploy_before_it():
    history = [
        line("d1", "deploy", "2026-11-02T10:00:00Z", to="1-a", result="success"),
        line("d2", "deploy", "2026-11-02T10:10:00Z", to="2-b", result="success"),
        line("b1", "rollback", "2026-11-02T10:20:00Z", to="1-a", result="success"),
        line("b2", "rollback", "2026-11-02T10:30:00Z", to="2-b", result="success"),
    ]
    f = metrics.metrics(history)
    assert (f["deploys"], f["rollbacks"]) == (2, 2)
    assert f["change_failure_rate"] == 0.5  # d2 only; d1 was fine until d2 replaced it
    assert f["time_to_restore_s"]["median"] == 600.0  # d2 ended 10:10, b1 restored at 10:20


def test_corrupt_lines_are_counted_and_the_page_is_self_contained_with_its_plots():
    f = metrics.metrics(HISTORY, RELEASES)
    text = metrics.lines("billing", f, corrupt=2)
    assert text[0] == "billing: 4 deploy run(s) and 1 rollback(s) over 2 week(s)"
    assert "(2 audit line(s) could not be read and were skipped)" in text[-1]
    page = report_html.render("billing", f, text)
    assert page.count("<svg") == 2 and "<script" not in page and "http" not in page.replace("http://www.w3.org", "")
    assert "change failure rate    50%" in page


def test_a_commit_made_in_another_time_zone_is_read_in_utc():
    assert metrics.parse_time("2026-11-02T10:00:00+02:00") == metrics.parse_time("2026-11-02T08:00:00Z")
    assert metrics.parse_time("2026-11-02T08:00:00") == metrics.parse_time("2026-11-02T08:00:00Z")
