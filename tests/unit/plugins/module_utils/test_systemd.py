"""The systemctl calls the modules make (the faults scenario runs them against real systemd)."""

import pytest
from ansible_collections.asgi.deploy.plugins.module_utils.systemd import Systemd, SystemdError
from ansible_collections.asgi.deploy.tests.unit.plugins.fakes import FakeRun


@pytest.fixture
def run():
    broken = (lambda argv: "broken.service" in argv, (1, "", "Job for broken.service canceled."))
    return FakeRun([broken])


def test_a_stop_for_good_queues_jobs_nothing_may_replace(run):
    Systemd(run).stop_for_good("demo.socket", "demo-probe.socket", "demo.service")
    assert run.calls == [
        ["systemctl", "stop", "--job-mode=replace-irreversibly", "demo.socket", "demo-probe.socket", "demo.service"]
    ]


def test_a_cancelled_job_is_an_error_that_names_it(run):
    with pytest.raises(SystemdError, match=r"Job for broken\.service canceled"):
        Systemd(run).restart("broken.service")


def test_reset_failed_and_disable_tolerate_units_that_are_not_there(run):
    Systemd(run).reset_failed("broken.service")
    Systemd(run).disable("broken.service")
    assert [argv[1] for argv in run.calls] == ["reset-failed", "disable"]


def test_show_reads_the_properties_a_run_decides_on(run):
    run.on(("systemctl", "show"), (0, "Id=demo.service\nMainPID=42\nNRestarts=1\nNeedDaemonReload=yes\n", ""))
    props = Systemd(run).show("demo.service")
    assert (props["MainPID"], props["NRestarts"], props["NeedDaemonReload"]) == (42, 1, "yes")
    assert "NeedDaemonReload" in run.calls[0][-1]


def test_running_lists_only_units_that_are_not_dead(run):
    listing = "asgi-hook-demo-before-switch.service loaded active running x\n"
    listing += "asgi-hook-demo-after-switch.service loaded inactive dead y\n"
    listing += "asgi-hook-demo-api-exec.service loaded active running another app's\n"
    run.on(("systemctl", "list-units"), (0, listing, ""))
    names = ("asgi-hook-demo-before-switch.service", "asgi-hook-demo-after-switch.service")
    assert Systemd(run).running(*names) == ["asgi-hook-demo-before-switch.service"]
    # Exact names only: an app named demo never waits for the hooks of an app named demo-api.
    assert run.calls[-1][-2:] == list(names)


def test_the_connections_an_instance_holds_are_its_clients_tcp_and_unix_not_its_journal_stream(tmp_path):
    proc = tmp_path
    for pid, fds in ((100, {"3": "socket:[11]", "4": "socket:[12]", "5": "pipe:[9]"}), (101, {"3": "socket:[13]"})):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "stat").write_text(f"{pid} (gunicorn) S {100 if pid == 101 else 1} 0 0")
        for fd, target in fds.items():
            (proc / str(pid) / "fd" / fd).symlink_to(target)
    (proc / "net").mkdir()
    tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    tcp += "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 10 1\n"  # listening
    tcp += "   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000 0 0 11 1\n"  # a client
    (proc / "net/tcp").write_text(tcp)
    (proc / "net/tcp6").write_text(tcp.splitlines()[0] + "\n")
    unix = "Num       RefCount Protocol Flags    Type St Inode Path\n"
    unix += "0: 00000002 00000000 00000000 0001 03 12\n"  # its stdout, connected to the journal: no path here
    unix += "0: 00000002 00000000 00000000 0001 03 13 /run/billing.sock\n"  # a client of asgi_listen_unix
    (proc / "net/unix").write_text(unix)
    assert Systemd(run=None, proc=str(proc)).connections_of(100) == 2
