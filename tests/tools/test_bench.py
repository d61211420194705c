"""The benchmark's own arithmetic and report, on hand-made data."""

import http.server
import threading
import time

import loadgen
import pytest
import report
import scale


def test_summary_counts_failures_and_takes_percentiles_of_successes_only():
    records = [loadgen.Record(t=i / 100, ms=float(i), ok=True) for i in range(1, 101)]
    records += [loadgen.Record(t=1.0, ms=5000.0, ok=False, error="ConnectionRefusedError")] * 3
    summary = loadgen.summarize(records)
    assert summary["requests"] == 103
    assert summary["failures"] == 3
    assert summary["errors"] == {"ConnectionRefusedError": 3}
    assert summary["p50_ms"] == 51.0  # nearest rank over 1..100
    assert summary["p99_ms"] == 99.0
    assert summary["max_ms"] == 100.0


def test_an_empty_window_summarises_to_zeros():
    assert loadgen.summarize([]) == {
        "requests": 0,
        "failures": 0,
        "errors": {},
        "p50_ms": 0.0,
        "p99_ms": 0.0,
        "max_ms": 0.0,
    }


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/truncated":  # a host that dies mid-reply
                self.send_response(200)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.write(b"{}")
                self.close_connection = True
                return
            status = 200 if self.path == "/version" else 503
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def until(load, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(load.records) < count:
        assert time.monotonic() < deadline, f"only {len(load.records)} requests in {timeout}s"
        time.sleep(0.01)


def test_the_load_records_every_request_and_counts_bad_statuses(server):
    with loadgen.Load([server], users=2, path="/version") as good:
        until(good, 20)
    with loadgen.Load([server], users=1, path="/other") as bad:
        until(bad, 5)
    assert good.window(0, 1e9)["failures"] == 0
    assert all(r.ok for r in good.records)
    assert bad.window(0, 1e9)["errors"].keys() == {"HTTP 503"}
    assert loadgen.http_ok(server + "/version")
    assert not loadgen.http_ok("http://127.0.0.1:9/")  # nothing listens on the discard port


def test_a_reply_cut_short_is_a_failure_and_the_load_goes_on(server):
    with loadgen.Load([server], users=1, path="/truncated") as cut:
        until(cut, 5)
    assert cut.window(0, 1e9)["errors"].keys() == {"IncompleteRead"}


def results():
    window = {"requests": 100, "failures": 0, "errors": {}, "p50_ms": 4.0, "p99_ms": 9.0, "max_ms": 12.0}
    zero = {
        s: {
            "steady": window,
            "during": {**window, "failures": 2 if s == "plain" else 0},
            "max_over_steady_max": 1.0,
            "command_wall_s": 10.0,
            "window_s": [1.0, 2.0, 3.0],
            "series": {"bucket_s": 0.1, "t": [0.0, 0.1, 0.2], "max_ms": [4.0, 12.0, 5.0], "failures": [0, 2, 0]},
        }
        for s in ("handover", "restart", "hup", "plain")
    }
    for s in ("handover", "restart"):
        zero[s].update(switch=window, switch_window_s=[1.5, 2.5], switch_max_over_steady_max=1.0)
    run = {"wall_s": 4.0, "cpu_s": 3.0, "tasks_per_host": 3.0, "s_per_task": 0.4}
    speed = {"empty_playbook": run, "one_time": run, "deploy": run, "no_change": run, "rollback": run}
    speed.update(no_change_over_empty=1.0, deploy_over_empty=1.0, rollback_over_empty=1.0)
    return {
        "mode": "full",
        "started_at": "2026-11-24T00:00:00Z",
        "bench_wall_s": 600,
        "machine": {"cores": 2, "cpu": "x", "os": "Debian", "kernel": "6", "podman": "podman 4", "ansible": "a"},
        "conditions": {"hosts": "h", "gunicorn_workers_per_host": 2, "load": "l", "app": "app"},
        "first_deploy": {**run, "hosts": 9},
        "zero_downtime": zero,
        "serving": {
            "configs": {
                "gunicorn_uvicorn_worker": {"rps": 950.0, "p50_ms": 1, "p99_ms": 2, "errors": 0},
                "uvicorn_standalone": {"rps": 1000.0, "p50_ms": 1, "p99_ms": 2, "errors": 0},
            },
            "ratios_vs_uvicorn": {"gunicorn_uvicorn_worker": 0.95, "uvicorn_standalone": 1.0},
        },
        "venv": {
            "packages": 23,
            "median_s": {"uv_cold": 0.5, "uv_warm": 0.2, "pip_cold": 5.0, "pip_warm": 4.0},
            "pip_over_uv_cold": 10.0,
            "pip_over_uv_warm": 20.0,
        },
        "deploy_speed": {"3": speed, "9": {**speed, "deploy": {**run, "cpu_s": 9.0}}},
        "controller_cpu": {
            "deploy": {"per_host_s": 0.5, "fixed_s": 0.0, "projected_cpu_s": {"100": 50.0, "1000": 500.0}},
            "rollback": {"per_host_s": 0.5, "fixed_s": 0.0, "projected_cpu_s": {"100": 50.0, "1000": 500.0}},
            "no_change": {"per_host_s": 0.1, "fixed_s": 0.0, "projected_cpu_s": {"100": 10.0, "1000": 100.0}},
            "app_wheel_and_wheelhouse_s": 3.0,
        },
        "reproducibility": {"releases": {"1.1.0-a": {"hosts": 9, "rate": 1.0}}, "lowest_rate": 1.0},
        "growth": {"serial_1": {"3": 30, "9": 90}, "serial_all": {"3": 15, "9": 25}},
        "shipped": {
            "wheelhouse_mb": 27.0,
            "app_wheel_kb": 8.0,
            "lock_change": {
                "moved": "click==8.5.0",
                "wheels_sent": ["click-8.5.0-py3-none-any.whl"],
                "changed_wheels_kb": 100.0,
                "wheelhouse_kb_per_host": 104.0,
                "over_changed": 1.04,
            },
        },
        "long_lived": {
            "hosts": 3,
            "held_websockets_per_host": 100,
            "rollout_wall_s": {"none": 10.0, "held": 11.0},
            "held_over_none": 1.1,
            "most_cuts_per_client": 1,
            "clients_cut": 300,
            "failed_connects": 0,
        },
        "shape": {
            "deploy_files": 61,
            "deploy_python_files": 32,
            "files": [],
            "lines": 10195,
            "lines_at_24": 9980,
            "longest_function": "plugins/plugin_utils/artifacts.py:identify",
            "longest_function_lines": 59,
        },
        "layouts": {
            name: {"strategy": "handover", "handover_s": s, "steps": {}, "app_starts_per_handover": n}
            for name, s, n in (("before slots", 3.0, 2), ("slots", 2.0, 1))
        },
        "targets": [
            {"target": "handover: failed requests", "value": 0, "limit": "0", "met": True},
            {"target": "rollback of 3 hosts (s)", "value": 40, "limit": "< 30", "met": False},
        ],
    }


def test_the_controllers_cpu_per_host_is_the_difference_between_two_fleet_sizes():
    import run

    speed = {
        n: {r: {"cpu_s": cpu} for r in ("deploy", "no_change", "rollback")} for n, cpu in (("3", 6.0), ("9", 12.0))
    }
    speed["3"]["one_time"] = {"cpu_s": 4.0}
    again = {"3": {**speed["3"], "deploy": {"cpu_s": 7.0}}, "9": {**speed["9"], "deploy": {"cpu_s": 19.0}}}
    cpu = run.cpu_per_host([speed, again], "3", "9")
    # Means of the rounds: 6.5 s on 3 hosts, 15.5 s on 9.
    assert cpu["deploy"] == {
        "per_host_s": 1.5,
        "fixed_s": 2.0,
        "projected_cpu_s": {100: 152.0, 1000: 1502.0},
        "rounds_cpu_s": [[6.0, 12.0], [7.0, 19.0]],
    }
    assert cpu["no_change"]["per_host_s"] == 1.0
    assert cpu["app_wheel_and_wheelhouse_s"] == 4.0


def test_the_report_has_every_section_and_writes_its_plots(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "IMG", tmp_path)
    text = report.render(results())
    for heading in (
        "## Targets",
        "## 1. Zero downtime",
        "## 2. Serving",
        "## 3. A release venv",
        "## 4. Deploy",
        "## 5.",
        "## Long-lived connections",
        "## The handover before slots and with slots",
    ):
        assert heading in text
    assert "| rollback of 3 hosts (s) | 40 | < 30 | **missed** |" in text
    handover_row = f"| {report.LABELS['handover']} | 100 | 0 | 4.0 | 9.0 | 12.0 | 12.0 | 1.0 | 12.0 | 1.0 |"
    assert handover_row in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench-growth.png", "bench-latency.png", "bench-venv.png"]
    assert all(p.stat().st_size > 1000 for p in tmp_path.iterdir())


def test_the_targets_are_the_issues_numbers_met_or_missed():
    import run

    data = results()
    speed = data["deploy_speed"]
    speed["9"] = {**speed["9"], "deploy": {**speed["9"]["deploy"], "tasks_per_host": 7.0}}
    speed["3"] = {**speed["3"], "rollback_over_empty": 3.5, "no_change_over_empty": 1.1}
    data["growth"] = {"serial_1": {"3": 30, "9": 90}, "serial_all": {"3": 20, "9": 29}}
    found = {t["target"]: t for t in run.targets(data)}
    # Engine v2's goals: 6, 4 and 3 tasks a host; 0.6, 0.4 and 0.15 s of controller CPU a host; 4x and 2x.
    assert not found["tasks per host: new-version deploy (most of 3 and 9 hosts)"]["met"]
    assert found["tasks per host: rollback (most of 3 and 9 hosts)"]["met"]
    assert not found["rollback / empty playbook (3 hosts)"]["met"]
    assert found["no-change deploy / empty playbook (3 hosts)"]["limit"] == "<= 1.2"
    assert found["new-version deploy / empty playbook (3 hosts)"]["limit"] == "<= 4"
    assert found["controller CPU per host, deploy (3 to 9 hosts)"]["met"]
    assert not found["controller CPU per host, rollback (3 to 9 hosts)"]["met"]
    assert found["controller CPU per host, no-change deploy (3 to 9 hosts)"]["limit"] == "<= 0.15 s"
    assert found["hosts of one Python and platform building one release: same venv digest"]["met"]
    assert found["bytes a one-package lock change ships / the changed wheel (click==8.5.0)"]["met"]
    assert not found["collection files a deploy of one host reads"]["met"]
    assert found["plugin Python lines"]["limit"] == "<= 9980 (when #24 was filed)"
    assert found["longest plugin function (plugins/plugin_utils/artifacts.py:identify)"]["met"]
    assert found["deploy of 9 hosts / 3 hosts, serial = all"] == {
        "target": "deploy of 9 hosts / 3 hosts, serial = all",
        "value": 1.45,
        "limit": "<= 1.5",
        "met": True,
    }


def test_ansible_batches_a_serial_list_in_turn_repeating_the_last_item():
    assert scale.batches(100, [1, "25%", "100%"]) == [1, 25, 74]
    assert scale.batches(10, ["10%"]) == [1] * 10
    assert scale.batches(5, ["1%"]) == [1] * 5  # a percentage under one host is one host
    assert scale.batches(3, [1]) == [1, 1, 1]
    assert scale.batches(1000, ["100%"]) == [1000]


def test_a_batch_takes_a_hosts_time_per_wave_of_forks_or_the_controllers_cpu_whichever_is_longer():
    # Host-bound: 10 hosts in waves of 5 forks, 2 waves of 10 s; the CPU (10 x 0.5 s over 2 cores) is shorter.
    assert scale.wall_s(10, ["100%"], per_host_wall=10, per_host_cpu=0.5, cores=2, forks=5) == 20
    # Controller-bound: 1,000 hosts, forks 1,000: 1,000 x 0.5 s over 2 cores.
    assert scale.wall_s(1000, ["100%"], per_host_wall=10, per_host_cpu=0.5, cores=2, forks=1000) == 250
    assert scale.wall_s(3, [1], per_host_wall=10, per_host_cpu=0.5, cores=2, forks=5) == 30


def test_the_scale_model_takes_its_inputs_from_one_bench_run_and_prices_1000_hosts():
    data = results()
    found = scale.figures(data)
    assert found["per_host_wall_s"] == 10.0  # (90 - 30) s over the 6 hosts between 3 and 9
    fleet = scale.model(data, 1000)
    assert fleet["cpu_s"]["deploy"] == 500
    assert fleet["first_deploy_gb"] == 26.4 and fleet["new_release_mb"] == 7.8
    assert fleet["lock_change_mb"] == 101.6  # 104 KB a host
    assert fleet["wall_min"]["serial: 1"] == round(1000 * 10 / 60, 1)
    text = scale.render(data, report.table)
    assert "| deploy | 0.5 | 0.0 | 50 | 500 |" in text
    assert "| serial: 1 | 16.7 | 166.7 |" in text


def test_the_files_a_deploy_reads_are_the_collections_tracked_ones_a_compiled_module_as_its_source(tmp_path):
    import shape

    log = tmp_path / "files.log"
    collection = "/x/.collections/ansible_collections/asgi/deploy"
    log.write_text(
        f"{collection}/plugins/plugin_utils/__pycache__/moves.cpython-311.pyc\n"
        f"{collection}/plugins/plugin_utils/moves.py\n"
        f"{shape.ROOT}/playbooks/deploy.yml\n"
        f"{shape.ROOT}/ansible.cfg\n"  # the project's, not the collection's
        f"{collection}/roles/rollout/tasks/no-such-file.yml\n"
    )
    assert shape.files_read(log) == ["playbooks/deploy.yml", "plugins/plugin_utils/moves.py"]
    code = shape.plugin_code()
    assert code["lines"] > 1000 and code["longest_function"].startswith("plugins/")
