"""What the manager and the agent both know about kernels.

A shared room: manager modules and agent modules import it, it imports neither.

* `contract`: the kernel container contract: the user it runs as, the paths inside it,
  the labels of containers and images, the base environment;
* `catalog`: ``lang`` → image resolution over image labels (`resolve_lang`, `split_ref`)
  and `ImageInfo`, one local image as the agent and ``crucible images list`` see it;
* `limits`: request limits both ends enforce (session files, spec 4.9-4.11).

The languages themselves (image recipes and runner recipes, one definition each) are
in `crucible.agent.runner.languages`: the runner runs inside the containers and can
import only its own package, and the manager needs no more of a language than the labels
its image carries.
"""
