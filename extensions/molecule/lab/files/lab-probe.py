#!/usr/bin/python3
"""Answer HTTP on the socket systemd passes in (fd 3); bind nothing itself."""

import http.server
import os
import socket
import sys

SD_LISTEN_FDS_START = 3

if os.environ.get("LISTEN_FDS") != "1" or os.environ.get("LISTEN_PID") != str(os.getpid()):
    sys.exit("lab-probe: expected exactly one socket from systemd (LISTEN_FDS=1)")


class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"lab-probe ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = http.server.HTTPServer(("", 0), Probe, bind_and_activate=False)
server.socket = socket.socket(fileno=SD_LISTEN_FDS_START)
print(f"lab-probe: serving on inherited socket {server.socket.getsockname()}", flush=True)
server.serve_forever()
