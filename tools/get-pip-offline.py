"""Stand-in for get-pip.py, which ansible-test downloads from a host this network cannot reach.

ansible-test creates its sanity virtualenvs without pip and runs this script in
them with the packages to install (``pip==24.2`` and so on). Here pip comes from
the interpreter's own ensurepip, then installs what was asked from the package
index. ansible-test runs pip with no configuration file (PIP_CONFIG_FILE=/dev/null),
so this first install is told to trust the system's CA bundle; the pip it
installs (24.2 and later) uses the system trust store by itself from then on.
tools/ansible-test.sh puts this file where ansible-test looks for its cached copy.
"""

import ensurepip
import os
import subprocess
import sys

# get-pip.py options that pip itself does not know.
OWN_OPTIONS = ("--no-setuptools", "--no-wheel")
SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

ensurepip.bootstrap(upgrade=True)
trust = ["--cert", SYSTEM_CA] if os.path.isfile(SYSTEM_CA) else []
wanted = [arg for arg in sys.argv[1:] if arg not in OWN_OPTIONS]
subprocess.check_call([sys.executable, "-m", "pip", "install", *trust, *wanted])
