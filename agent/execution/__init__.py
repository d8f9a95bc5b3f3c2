"""The agent's side of runs: their output, their queue, the limits they run under.

* `output`: `Run`, what one run has said and not yet handed out, and the bounds on it
  (`OutputCaps` per execute call, `OutputLedger` per session and per agent);
* `queue`: `RunQueue`, one kernel's bounded queue of runs (`QueueFull` past it);
* `limits`: `ExecLimits` (the ``[agent]`` settings), a kernel's start rate
  (`TokenBucket`) and the agent's execution slots, shared fairly by access key
  (`FairSlots`).

Where runs execute (the runner in the container) is `crucible.agent.runner`; who starts
them is `crucible.agent.kernel.dispatch`.
"""
