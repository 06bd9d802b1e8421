"""Putting the agent on a device: ``swarmdeploy agent install|uninstall|provision``.

* :mod:`.layout` -- what a provisioned system holds (paths, modes, the systemd unit, the
  environment files), as pure data: no I/O.
* :mod:`.files` -- writing, showing (``--dry-run``) and removing those files below a root.
* :mod:`.install` -- ``agent install`` and ``agent uninstall`` on the running device.
* :mod:`.image` -- ``agent provision``: an image or directory tree flashed to many devices,
  with one token per device in an overlay directory (ADR 0008).
* :mod:`.cli` -- the argument parsing of the three commands.

Everything takes a ``root`` directory, so tests (and image builders) work on a temporary
tree; the machine's own systemd is touched only when the root is ``/``.
"""
