# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Record what each release task sent its host: one JSON line per host, appended to $ASGI_SHIPPED_LOG.

Enabled by the bench (its bytes-shipped figure) and the release tests (a one-package lock change): both read the
action's own account of the files it transferred, ``shipped`` (see asgi.deploy.release's RETURN)."""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "asgi_shipped"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        shipped = result._result.get("shipped")
        if result._task.action in ("asgi.deploy.release", "release") and shipped:
            with open(os.environ["ASGI_SHIPPED_LOG"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"host": result._host.get_name(), **shipped}) + "\n")
