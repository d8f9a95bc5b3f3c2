"""The in-container kernel runner (standard library only, Python 3.9+).

Bind-mounted read-only at ``/opt/crucible/runner`` and started in every kernel
container as ``python3 /opt/crucible/runner/main.py --lang LANG --socket SOCK``. It
speaks the framed JSON protocol of docs/internals.md ("Agent ↔ kernel runner") with
the agent. Modules:

* `framing`: the wire format (also usable by the agent side and tests);
* `languages`: one definition per language: what the runner does with it in query and
  batch mode (its `Recipe`), and what its image holds (for the image builder);
* `server`: the socket, the message handlers, the run queue;
* `jobs`: one run from ``execute`` to ``finished``; `console`: output batching;
* `pyproc`/`pychild`: the persistent Python interpreter, runner side / child side;
* `procs`/`stdin_probe`: shell steps on a pty and the waiting-for-input heuristic;
* `streams`: reading a process's output (a pipe or a pty) as the flow allows;
* `loop`/`channel`/`flow`: the selector loop, framed sockets, back-pressure;
* ``pysite/``: modules for user code (``crucible_kernel.display``, the matplotlib
  backend), put on the child's ``sys.path``.

This package must import nothing outside the standard library and must not import
its submodules here: main.py loads it under another name when run as a script.

Its timing constants (poll ticks, the input-probe delays, the redial backoff, reaper
sweeps, the bound on a completion) stay module constants rather than configuration
keys: the runner reads no configuration (it runs inside the kernel, on the standard
library alone), and they pace its own loop rather than set a policy. What an operator
bounds is enforced by the agent from ``[agent]`` (a run's time limit, the cancellation
grace, the runner's start, the completion call as a whole).
"""
