"""Entry point: ``python3 main.py --lang LANG --socket PATH [--workdir DIR]``.

Run as a plain script from a read-only folder, this file loads its own directory as a
package named ``crucible_runner`` (so the other modules use ordinary relative imports)
without putting the directory on ``sys.path``, where its module names would shadow the
user's. Imported as ``crucible.agent.runner.main`` it does nothing at import time.

``main.py --python-child FD`` is the Python query kernel's child process (pychild.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

PACKAGE_ALIAS = "crucible_runner"


def _package() -> str:
    """The import name of this runner package, loading it when run as a script."""
    if __package__:
        return __package__
    here = os.path.dirname(os.path.abspath(__file__))
    # Python put the script's folder first on sys.path; user code must not see it.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if PACKAGE_ALIAS not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE_ALIAS, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
        )
        assert spec is not None and spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE_ALIAS] = module
        spec.loader.exec_module(module)
    return PACKAGE_ALIAS


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    package = _package()
    if len(args) == 2 and args[0] == "--python-child":
        importlib.import_module(f"{package}.pychild").main(int(args[1]))
        return 0
    startup = importlib.import_module(f"{package}.startup")
    result: int = startup.serve(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
