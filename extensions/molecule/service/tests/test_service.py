"""demo (TCP, UvicornWorker, a secret) and other (loopback + unix socket, asgi worker) on one host."""

import base64
import re
import time
from pathlib import Path

import pytest

# The app's one name: a link to the live slot (blue, on a host that had one deploy).
DEMO = "demo.service"
SLOT = "demo-blue.service"
DRAIN = 5  # asgi_drain_timeout in converge.yml
URL_SLOW = "http://127.0.0.1:8000/sleep?seconds=60"


def show(host, unit, *props):
    out = host.run("systemctl show %s " + " ".join(f"-p {p}" for p in props), unit).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def settings(app):
    """The settings set the app runs with (the digest its last handover recorded)."""
    return lambda host: "/etc/asgi-deploy/{}/settings/{}".format(
        app, host.file(f"/srv/{app}/deployed-settings.sha256").content_string.strip()
    )


DEMO_SETTINGS, OTHER_SETTINGS = settings("demo"), settings("other")


def listeners(host, pattern):
    """Lines of `ss` for listening sockets whose local address matches pattern."""
    return [line for line in host.run("ss -Hltnpx").stdout.splitlines() if re.search(pattern, line)]


@pytest.mark.units("demo.socket", DEMO)
def test_socket_listens_before_any_request_and_the_first_request_starts_the_service(host):
    host.run_expect([0], "systemctl stop %s", DEMO)
    assert not host.service(DEMO).is_running
    [line] = listeners(host, r"0\.0\.0\.0:8000\s")
    assert '"systemd",pid=1' in line
    assert "gunicorn" not in line

    reply = host.run("curl -fsS --max-time 30 http://127.0.0.1:8000/readyz")

    assert reply.rc == 0, reply.stderr
    assert host.service(DEMO).is_running


@pytest.mark.units("demo.socket", "demo-blue-probe.socket", SLOT)
def test_stopping_the_listening_socket_stops_the_live_slot_and_its_probe_socket_in_the_same_transaction(host):
    # The slot requires the socket, and its probe socket is bound to the slot: one stop takes all three, so no
    # readiness probe queued on the probe socket can start the slot again in between.
    host.run_expect([0], "curl -fsS --max-time 30 http://127.0.0.1:8000/readyz")
    host.run_expect([0], "systemctl stop --job-mode=replace-irreversibly demo.socket")
    states = host.run("systemctl is-active demo.socket demo-blue-probe.socket %s", SLOT).stdout.split()
    host.run_expect([0], "systemctl start demo.socket %s", DEMO)
    assert states == ["inactive", "inactive", "inactive"]
    host.run_expect([0], "curl -fsS --max-time 30 http://127.0.0.1:8000/readyz")


def test_the_apps_one_name_is_the_live_slot(host):
    assert host.file("/etc/systemd/system/demo.service").linked_to == "/etc/systemd/system/demo-blue.service"
    assert show(host, DEMO, "Id")["Id"] == SLOT
    status = host.run("systemctl status --no-pager -n0 demo").stdout
    assert status.startswith("● demo-blue.service - demo (blue slot;"), status
    # Both slots log as the app.
    assert "demo[" in host.run("journalctl --no-pager -n 50 -t demo").stdout


@pytest.mark.units(DEMO)
def test_gunicorn_serves_systemds_socket_and_binds_nothing_itself(host, wait_for):
    # The master opens its control socket once it runs: a service (re)started just before may not have it yet.
    wait_for(lambda: host.file("/run/demo-blue/gunicorn.ctl").is_socket, what="the control socket of demo")
    pid = show(host, DEMO, "MainPID")["MainPID"]
    own = [line for line in host.run("ss -Hltnpx").stdout.splitlines() if f"pid={pid}," in line]
    tcp = [line for line in own if line.startswith("tcp")]
    assert len(tcp) == 1
    assert '"systemd",pid=1' in tcp[0]
    assert "0.0.0.0:8000" in tcp[0]
    # Besides that, only its private probe socket (also systemd's) and its
    # control socket, in its runtime directory.
    unix = [line for line in own if not line.startswith("tcp")]
    assert len(unix) == 2, unix
    [probe] = [line for line in unix if "/run/demo-blue-probe.sock" in line]
    assert '"systemd",pid=1' in probe
    assert any("/run/demo-blue/gunicorn.ctl" in line for line in unix)
    assert show(host, "demo.socket", "ReusePort")["ReusePort"] == "no"
    assert "reuse_port = False" in host.file(f"{DEMO_SETTINGS(host)}/gunicorn.conf.py").content_string


def test_gunicorn_refuses_to_run_without_the_systemd_socket(host):
    # As the unit runs it (its user, directory and settings: the app reads them at import), minus the socket.
    unit = show(host, "demo.service", "EnvironmentFiles", "Environment", "WorkingDirectory")
    env_file = unit["EnvironmentFiles"].split(" (")[0]
    cmd = host.run(
        "systemd-run --quiet --pipe --wait --collect -p User=demo -p WorkingDirectory=%s "
        "-p EnvironmentFile=%s -p Environment=%s -- timeout 30 /srv/demo/blue/venv/bin/gunicorn "
        "--config %s/gunicorn.conf.py demo_app.main:app",
        unit["WorkingDirectory"],
        env_file,
        unit["Environment"],
        DEMO_SETTINGS(host),
    )
    assert cmd.rc not in (0, 124)
    assert "no socket from systemd" in cmd.stderr


def test_the_service_runs_as_its_own_unprivileged_user(host):
    user = host.user("demo")
    assert user.uid < 1000
    assert user.shell == "/usr/sbin/nologin"
    pid = show(host, DEMO, "MainPID")["MainPID"]
    owners = set(host.run("ps -o user= --ppid %s -p %s", pid, pid).stdout.split())
    assert owners == {"demo"}
    assert host.user("other").uid != user.uid


HARDENED_YES = (
    "NoNewPrivileges",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "RestrictNamespaces",
)


def test_the_unit_is_hardened(host):
    others = ("ProtectSystem", "CapabilityBoundingSet", "UMask", "RestrictAddressFamilies", "SystemCallFilter")
    props = show(host, DEMO, *HARDENED_YES, *others)
    for prop in HARDENED_YES:
        assert props[prop] == "yes", prop
    assert props["ProtectSystem"] == "strict"
    assert props["CapabilityBoundingSet"] == ""
    assert props["UMask"] == "0027"
    assert set(props["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert props["SystemCallFilter"] != ""


def test_systemd_analyze_security_exposure_is_at_most_2(host):
    out = host.run("systemd-analyze security --no-pager %s", DEMO).stdout
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    print(f"exposure of {DEMO}: {exposure}")
    assert exposure <= 2.0, out


def test_readiness_is_left_to_http_not_sd_notify(host):
    assert show(host, DEMO, "Type")["Type"] == "exec"


def test_systemd_waits_longer_than_the_drain(host):
    stop = show(host, DEMO, "TimeoutStopUSec")["TimeoutStopUSec"]
    assert stop.endswith("s")
    assert int(stop.rstrip("s")) > DRAIN
    assert f"graceful_timeout = {DRAIN}" in host.file(f"{DEMO_SETTINGS(host)}/gunicorn.conf.py").content_string


@pytest.mark.units(DEMO)
def test_a_stop_with_a_request_in_flight_is_ended_by_gunicorns_drain_not_by_systemds_kill(host):
    host.run_expect([0], "systemctl start %s", DEMO)
    host.run_expect([0], "curl -fsS --max-time 30 http://127.0.0.1:8000/readyz")
    slow = f"slow-request-{time.monotonic_ns()}"
    host.run_expect([0], "systemd-run --collect --unit %s curl -s --max-time 90 %s", slow, URL_SLOW)
    # The access log shows a request only when it ends: wait for the connection.
    deadline = time.monotonic() + 15
    while not host.run("ss -Htn state established '( dport = :8000 )'").stdout.strip():
        assert time.monotonic() < deadline, "slow request never connected"
        time.sleep(0.1)

    host.run_expect([0], "systemctl stop %s", DEMO)

    # Past its drain Gunicorn ends the request itself and exits cleanly; a systemd kill would say "timeout".
    assert show(host, SLOT, "Result")["Result"] == "success"
    host.run("systemctl stop %s", slow)
    host.run_expect([0], "systemctl start %s", DEMO)


def test_each_apps_control_socket_lives_in_its_own_runtime_directory(host, wait_for):
    for app in ("demo", "other"):
        host.run_expect([0], "systemctl start %s.service", app)
        path = f"/run/{app}-blue/gunicorn.ctl"
        ctl = wait_for(
            lambda path=path: host.file(path).is_socket and host.file(path), what=f"the control socket of {app}"
        )
        assert ctl.user == app
    assert not host.file("/nonexistent/.gunicorn").exists


@pytest.mark.units(DEMO)
def test_sigkill_of_the_master_brings_the_service_back_without_a_refused_connection(host, http_probe):
    host.run_expect([0], "systemctl start %s", DEMO)
    result = http_probe("--kill-main-of", DEMO, "--kill-after", "20", "--after", "20", "--deadline", "60")
    assert result["killed_pid"] != 0
    assert result["new_pid"] not in (0, result["killed_pid"]), result
    assert result["refused"] == 0, result
    # Only the one request in flight when the master died may be cut off.
    assert result["failed"] <= 1, result
    # Cut off means reset, or closed before the reply: which one depends on where the worker was.
    assert all("reset" in error.lower() or "remotedisconnected" in error.lower() for error in result["errors"]), result


def test_units_come_back_after_a_reboot_and_restart_on_failure(host):
    assert host.service("demo.socket").is_enabled
    # The boot wants the app's one name, which is the live slot (and only it).
    wants = host.file("/etc/systemd/system/multi-user.target.wants/demo.service")
    assert wants.is_symlink and wants.linked_to == "/etc/systemd/system/demo-blue.service"
    assert not host.file("/etc/systemd/system/multi-user.target.wants/demo-green.service").exists
    props = show(host, DEMO, "Restart", "StartLimitBurst", "StartLimitIntervalUSec")
    assert props["Restart"] == "on-failure"
    assert props["StartLimitBurst"] == "5"
    assert props["StartLimitIntervalUSec"] == "1min"


def test_two_apps_on_one_host_both_serve(host):
    demo = host.run("curl -fsS --max-time 30 http://127.0.0.1:8000/version")
    other_tcp = host.run("curl -fsS --max-time 30 http://127.0.0.1:8001/version")
    other_unix = host.run("curl -fsS --max-time 30 --unix-socket /run/other.sock http://other/version")
    for reply in (demo, other_tcp, other_unix):
        assert reply.rc == 0, reply.stderr
        assert '"release_id":"1.0.0-' in reply.stdout
    sock = host.file("/run/other.sock")
    assert sock.is_socket
    assert sock.mode == 0o660
    assert sock.group == "other"
    assert 'worker_class = "asgi"' in host.file(f"{OTHER_SETTINGS(host)}/gunicorn.conf.py").content_string


def test_limits_and_extra_directives_reach_the_running_instance(host):
    props = show(host, "other.service", "MemoryMax", "TasksMax", "LimitNOFILE", "Nice")
    assert (props["MemoryMax"], props["TasksMax"], props["Nice"]) == (str(512 * 1024**2), "64", "5")
    # The containers' hard limit caps it here (molecule's base config); hosts get 65536 by default.
    assert props["LimitNOFILE"] == "4096"
    pid = show(host, "other.service", "MainPID")["MainPID"]
    assert "Max open files            4096" in host.file(f"/proc/{pid}/limits").content_string
    assert environ_of(host, "other.service")["OTHER_EXTRA"] == "1"


def test_the_state_and_cache_directories_belong_to_the_service_user(host):
    environ = environ_of(host, "other.service")
    assert (environ["STATE_DIRECTORY"], environ["CACHE_DIRECTORY"]) == ("/var/lib/other", "/var/cache/other")
    for path in ("/var/lib/other", "/var/cache/other"):
        directory = host.file(path)
        assert directory.is_directory and directory.user == "other", path
    # Writable by the app despite ProtectSystem=strict; the hardening stays.
    pid = show(host, "other.service", "MainPID")["MainPID"]
    wrote = host.run("nsenter -t %s -m -S $(id -u other) -G $(id -g other) -- touch /var/lib/other/probe", pid)
    assert wrote.rc == 0, wrote.stderr
    out = host.run("systemd-analyze security --no-pager other.service").stdout
    assert float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1)) <= 2.0, out


def test_workers_default_to_the_cpus_the_instance_may_use(host):
    cpus = int(host.run("nproc").stdout)
    masters = host.run("systemctl show demo.service -p MainPID --value").stdout.strip()
    workers = host.run("pgrep -c -P %s", masters).stdout.strip()
    assert int(workers) == min(2 * cpus + 1, 8)


def test_units_pass_systemd_analyze_verify(host):
    # The live slot's units (the idle slot's have no release to run yet: its ExecStart is not there).
    kinds = (".socket", "-blue.service", "-blue-probe.socket")
    units = " ".join(f"/etc/systemd/system/{app}{kind}" for app in ("demo", "other") for kind in kinds)
    cmd = host.run(f"systemd-analyze verify --man=no {units}")
    assert cmd.rc == 0, cmd.stderr


def environ_of(host, unit):
    """The environment of the unit's main process, byte for byte (values may span lines)."""
    pid = show(host, unit, "MainPID")["MainPID"]
    raw = base64.b64decode(host.run("base64 -w0 /proc/%s/environ", pid).stdout)
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


SECRET = 'molecule-secret-7d1f\n  second line: "quoted" $HOME `cmd` \\ päßwörd ✓\n'  # noqa: S105 (from converge.yml)


def test_a_secret_from_the_environment_file_reaches_the_app_byte_for_byte_and_nothing_else(host):
    secret = SECRET
    unit = host.file("/etc/systemd/system/demo-blue.service").content_string
    assert secret not in unit
    assert f"EnvironmentFile={DEMO_SETTINGS(host)}/secrets.env" in unit
    stored = host.file(f"{DEMO_SETTINGS(host)}/secrets.env")
    assert (stored.user, stored.group, stored.mode) == ("root", "root", 0o600)
    assert "molecule-secret-7d1f" not in host.run("ps -eo args").stdout
    assert environ_of(host, DEMO)["DEMO_API_TOKEN"] == secret


def test_a_secret_as_a_credential_reaches_the_service_user_and_stays_out_of_the_unit(host):
    secret = "molecule-secret-other-3c9a"  # noqa: S105 (the test value from converge.yml)
    unit = host.file("/etc/systemd/system/other-blue.service").content_string
    assert f"LoadCredential=db_password:{OTHER_SETTINGS(host)}/credentials/db_password" in unit
    assert secret not in unit
    stored = host.file(f"{OTHER_SETTINGS(host)}/credentials/db_password")
    assert (stored.user, stored.mode, stored.content_string) == ("root", 0o600, secret)
    assert secret not in host.run("ps -eo args").stdout
    environ = environ_of(host, "other.service")
    assert secret not in "\n".join(environ.values())
    # In the service's own mount namespace: the credential, readable by the service user alone.
    pid = show(host, "other.service", "MainPID")["MainPID"]
    path = f"{environ['CREDENTIALS_DIRECTORY']}/db_password"
    # Owner and mode differ between systemd versions (252: the user, 0400; 257: root, 0440 and an ACL);
    # what holds on both: no access for others, and the service user reads it, in its own namespaces.
    mode = host.run("nsenter -t %s -m -- stat -c %%a %s", pid, path)
    assert mode.rc == 0 and int(mode.stdout, 8) & 0o007 == 0, (mode.stdout, mode.stderr)
    user = host.user("other")
    read = host.run("nsenter -t %s -a -S %s -G %s -- cat %s", pid, str(user.uid), str(user.gid), path)
    assert (read.rc, read.stdout) == (0, secret), read.stderr
    assert host.run("nsenter -t %s -m -- cat %s/db_password", pid, environ["CREDENTIALS_DIRECTORY"]).stdout == secret


def test_secrets_never_show_in_ansible_output(host, playbook):
    converge = Path(__file__).resolve().parents[1] / "converge.yml"
    result = playbook(converge, limit=host.backend.get_hostname(), args=["--check", "--diff", "-v"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for secret in ("molecule-secret-7d1f", "molecule-secret-other-3c9a"):
        assert secret not in output


@pytest.mark.units(DEMO)
def test_reload_replaces_workers_while_the_socket_keeps_serving(host):
    pid = show(host, DEMO, "MainPID")["MainPID"]
    before = set(host.run("pgrep -P %s", pid).stdout.split())
    host.run_expect([0], "systemctl reload %s", DEMO)
    deadline = time.monotonic() + 30
    while True:
        after = set(host.run("pgrep -P %s", pid).stdout.split())
        if after and not (after & before):
            break
        assert time.monotonic() < deadline, "workers were not replaced after HUP"
        time.sleep(0.2)
    assert show(host, DEMO, "MainPID")["MainPID"] == pid
    host.run_expect([0], "curl -fsS --max-time 30 http://127.0.0.1:8000/healthz")
