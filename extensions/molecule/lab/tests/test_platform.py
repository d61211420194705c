"""The lab platform: what every other scenario relies on."""

import pytest

PROBE = "http://127.0.0.1:8099/"


def test_systemd_boots_to_running(host, wait_for):
    def settled():
        state = host.run("systemctl is-system-running").stdout.strip()
        return state if state not in ("initializing", "starting") else None

    state = wait_for(settled, timeout=60, what="systemd to finish booting")
    failed = host.run("systemctl --failed --no-legend --plain").stdout
    assert state == "running", f"system is {state}; failed units:\n{failed}"


def test_host_has_the_tools_the_roles_need(host):
    for tool in ("python3", "curl", "ip", "ps", "sudo", "sshd"):
        assert host.exists(tool), f"{tool} missing from the image"
    assert host.run("python3 -m venv --help").rc == 0


def test_each_boot_gets_its_own_machine_id(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert len(machine_id) == 32


@pytest.mark.units("lab-probe.socket", "lab-probe.service")
def test_socket_unit_activates_its_service_on_first_connection(host, wait_for):
    # Start from a stopped service so the connection below is what starts it.
    host.run_expect([0], "systemctl stop lab-probe.service")
    assert not host.service("lab-probe.service").is_running
    assert host.socket("tcp://127.0.0.1:8099").is_listening

    reply = host.run("curl -fsS --max-time 10 %s", PROBE)

    assert reply.rc == 0, reply.stderr
    assert reply.stdout.strip() == "lab-probe ok"
    assert host.service("lab-probe.service").is_running


@pytest.mark.units("lab-probe.service")
def test_service_journal_is_readable(host, journal_of, wait_for):
    host.run_expect([0], "curl -fsS --max-time 10 %s", PROBE)
    wait_for(
        lambda: "serving on inherited socket" in journal_of("lab-probe.service"),
        timeout=15,
        what="the probe's startup line in its journal",
    )


def test_probe_units_pass_systemd_verify(host):
    cmd = host.run(
        "systemd-analyze verify --man=no /etc/systemd/system/lab-probe.socket /etc/systemd/system/lab-probe.service"
    )
    assert cmd.rc == 0, cmd.stderr


def test_a_service_user_gets_its_credentials_as_on_a_host(host):
    # systemd hands credentials through a mount under /run/credentials, which needs
    # /run to be a shared mount (the image's run-shared.service makes it one).
    assert host.run("findmnt -n -o PROPAGATION /run").stdout.strip() == "shared"
    host.run_expect([0], "install -D -m 0600 /dev/null /tmp/lab-credential && printf 's3cret\\n' > /tmp/lab-credential")
    read = host.run(
        "systemd-run --quiet --wait --pipe --collect -p DynamicUser=yes -p PrivateUsers=yes "
        "-p LoadCredential=token:/tmp/lab-credential /bin/sh -c 'cat \"$CREDENTIALS_DIRECTORY/token\"'"
    )
    assert read.rc == 0, read.stderr
    assert read.stdout == "s3cret\n"
