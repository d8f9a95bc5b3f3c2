"""The manager's view of its agents (not the agent itself: that is `crucible.agent`).

* `links`: `AgentLink`, one linked agent seen from this manager (calls out, replies
  back) and the exceptions a call raises;
* `directory`: `AgentDirectory`, the links this manager holds, the agent rows their
  heartbeats record, and lost-agent detection;
* `notices`: what the directory hands on to the session side (`crucible.sessions.
  reconciliation`) through a memory channel: heartbeats, kernel events, lost agents.

The endpoint agents dial is `crucible.api.agent_socket`; the messages on the link are
`crucible.protocol`.
"""
