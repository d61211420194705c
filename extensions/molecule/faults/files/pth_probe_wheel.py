"""Write a wheel whose .pth file runs code in every Python that starts in the venv it is installed in.

    python3 pth_probe_wheel.py OUT_DIR

The code records the uid it ran as in the venv (while the venv is writable: at build time) and tries to
leave a file in /root, which only root could: the faults scenario checks that no code of a release ever
runs as root on a host.
"""

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

PTH = (
    "import os, sys; exec(\"for path, text in ((os.path.join(sys.prefix, 'pth-ran-as'), str(os.getuid()) + '\\\\n'), "
    "('/root/pth-ran-as-root', 'x')):\\n    try:\\n        open(path, 'a').write(text)\\n"
    '    except OSError:\\n        pass")\n'
)
FILES = {
    "pth_probe.pth": PTH,
    "pth_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pth-probe\nVersion: 1.0\n",
    "pth_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: faults\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n",
}


def main(out):
    record = "".join(
        "{},sha256={},{}\n".format(
            name, base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode(), len(text)
        )
        for name, text in FILES.items()
    )
    wheel = Path(out) / "pth_probe-1.0-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in {
            **FILES,
            "pth_probe-1.0.dist-info/RECORD": record + "pth_probe-1.0.dist-info/RECORD,,\n",
        }.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), text)
    print(hashlib.sha256(wheel.read_bytes()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
