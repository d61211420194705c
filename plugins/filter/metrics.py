# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Filters for the report playbook: a team's deploy metrics from every host's audit log."""

from __future__ import annotations

from ansible_collections.asgi.deploy.plugins.plugin_utils import metrics, report_html


def deploy_metrics(hosts, hostvars, key, period="week", window_h=24):
    """``{figures, lines, corrupt}`` over the audit lines every host returned (the asgi.deploy.audit_log module)."""
    events, releases, corrupt = [], {}, 0
    for host in hosts:
        found = dict(hostvars[host].get(key) or {})
        events += found.get("events", [])
        releases.update(found.get("releases", {}))
        corrupt += int(found.get("corrupt", 0))
    figures = metrics.metrics(events, releases, str(period), int(window_h))
    return {"figures": figures, "corrupt": corrupt}


def metrics_lines(found, app):
    return metrics.lines(str(app), found["figures"], found["corrupt"])


def metrics_html(found, app):
    return report_html.render(str(app), found["figures"], metrics.lines(str(app), found["figures"], found["corrupt"]))


class FilterModule:
    def filters(self):
        return {"deploy_metrics": deploy_metrics, "metrics_lines": metrics_lines, "metrics_html": metrics_html}
