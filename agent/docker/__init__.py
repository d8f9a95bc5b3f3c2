"""The Docker engine as the agent sees it.

* `driver`: `DockerDriver`, the only module that imports the ``docker`` SDK (every call
  in a worker thread, under a limiter and a deadline);
* `specs`: the values it takes and returns (`ContainerSpec`, `BindMount`,
  `ContainerState`, `ContainerSummary`);
* `errors`: its exceptions (`DockerError` and subclasses);
* `answers`: reading the engine's JSON answers (stats samples, timestamps).

Nothing is imported here, so that the values and errors can be used without the SDK.
"""
