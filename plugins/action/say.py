# Copyright: asgi.deploy maintainers
# MIT License (see LICENSE)
"""Action for asgi.deploy.say: print lines as they are, whatever the callback and its result format.

A list in a task result is printed on one line (JSON) or folded at 80 columns (YAML); a table or a
failure with a journal tail is then unreadable. These lines go to the display directly, one per
line, and the result keeps them (``lines``) for a machine to read.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        lines = args.get("lines")
        lines = [str(line) for line in lines] if isinstance(lines, list) else str(lines or "").splitlines()
        fail = bool(args.get("fail", False))
        display.display("\n".join(lines), color="bright red" if fail else None)
        if fail:
            # The lines are on the screen already: the failure repeats only the first.
            result.update(changed=False, failed=True, msg=lines[0] if lines else "failed")
        else:
            result.update(changed=False, lines=lines)
        return result
