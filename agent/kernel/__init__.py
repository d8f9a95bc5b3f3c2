"""One kernel as the agent supervises it: its facts, its runner, its runs.

* `info`: `KernelInfo`, what the agent knows about a kernel, and the container label
  that keeps it across agent restarts;
* `supervisor`: `KernelSupervisor`, one task per kernel: the runner's connection, the
  calls on the kernel (execute, cancel, interrupt, complete), its end;
* `dispatch`: `RunDispatcher`, runs started one at a time within the execution limits,
  held to the image's time limit, cancelled when their client went away;
* `runner_messages`: what the runner says, read defensively (the kernel writes it);
* `runner_link`, `runner_peer`: the agent's socket in the kernel's ipc directory, and
  who may connect to it (only the kernel's runner).
"""
