"""Fetch a URL over fresh connections, counting refusals and failures.

Runs on a test host with the system python3 (standard library only); prints
one JSON line. With --kill-main-of UNIT it SIGKILLs that unit's main process
after --kill-after successful requests, then keeps going until the unit has a
new main process and --after more requests succeeded (or --deadline passes).
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import time


def main_pid(unit):
    out = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--path", default="/healthz")
parser.add_argument("--kill-main-of")
parser.add_argument("--kill-after", type=int, default=20)
parser.add_argument("--after", type=int, default=20)
parser.add_argument("--requests", type=int, default=50)
parser.add_argument("--deadline", type=float, default=60.0)
args = parser.parse_args()

stats = {"ok": 0, "refused": 0, "failed": 0, "errors": [], "max_ms": 0.0, "killed_pid": 0, "new_pid": 0}
ok_after_restart = 0
start = time.monotonic()
while time.monotonic() - start < args.deadline:
    began = time.monotonic()
    try:
        conn = http.client.HTTPConnection(args.host, args.port, timeout=30)
        conn.request("GET", args.path)
        status = conn.getresponse().status
        conn.close()
    except ConnectionRefusedError:
        stats["refused"] += 1
        continue
    except OSError as exc:
        stats["failed"] += 1
        stats["errors"].append(repr(exc))
        continue
    stats["max_ms"] = max(stats["max_ms"], (time.monotonic() - began) * 1000)
    if status != 200:
        stats["failed"] += 1
        stats["errors"].append(f"HTTP {status}")
        continue
    stats["ok"] += 1
    if args.kill_main_of:
        if not stats["killed_pid"] and stats["ok"] >= args.kill_after:
            stats["killed_pid"] = main_pid(args.kill_main_of)
            os.kill(stats["killed_pid"], signal.SIGKILL)
        elif stats["killed_pid"]:
            pid = main_pid(args.kill_main_of)
            if pid and pid != stats["killed_pid"]:
                stats["new_pid"] = pid
                ok_after_restart += 1
                if ok_after_restart >= args.after:
                    break
    elif stats["ok"] >= args.requests:
        break
stats["seconds"] = round(time.monotonic() - start, 3)
stats["errors"] = stats["errors"][:5]
print(json.dumps(stats))
