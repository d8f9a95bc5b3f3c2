"""Python: the Python 3 kernel, its machine-learning variants, and Python 2.

Python 3 kernels run snippets in a persistent interpreter (the runner's pychild.py), so
globals persist between runs and completion asks the live namespace. Python 2 is run as
a program per snippet: the interpreter child is Python 3 code.
"""

from __future__ import annotations

from .schema import BLAS_THREADS, Language, Limits, Recipe, Service, run_main, script, words

#: Backend.AI's Python kernels run main.py; a lone script is an obvious second guess.
_python_exec = run_main("python3", "main.py", pattern="*.py")

#: Jupyter Notebook (Debian's python3-notebook), started on demand. No token and no
#: password: it listens on 127.0.0.1 inside a container without a network, so only the
#: session's tunnels (spec 5.5, signed, the owner's) reach it. Remote access is allowed
#: because the Host header is whatever name the user's end of the tunnel has. XSRF checks
#: stay on, so a web page in the user's browser cannot drive it: REST clients send the
#: ``_xsrf`` cookie back as ``X-XSRFToken``. Its notebook kernel is the system Python of
#: the image, the session's own. Jupyter's own files go to a private /tmp directory.
JUPYTER = Service(
    name="jupyter",
    protocol="http",
    port=8080,
    command=(
        "python3", "-m", "notebook",
        "--no-browser",
        "--ip=127.0.0.1",
        "--port={port}",
        "--port-retries=0",
        "--notebook-dir={workdir}",
        "--NotebookApp.token=",
        "--NotebookApp.password=",
        "--NotebookApp.allow_remote_access=True",
    ),
    env=(
        ("JUPYTER_RUNTIME_DIR", "{state}/runtime"),
        ("JUPYTER_CONFIG_DIR", "{state}/config"),
        ("JUPYTER_DATA_DIR", "{state}/data"),
        ("IPYTHONDIR", "{state}/ipython"),
    ),
)  # fmt: skip

#: TensorBoard (from the TensorFlow wheel's dependencies), reading ``~/logs``.
TENSORBOARD = Service(
    name="tensorboard",
    protocol="http",
    port=6006,
    command=(
        "tensorboard", "--logdir={workdir}/logs", "--host=127.0.0.1", "--port={port}",
    ),
)  # fmt: skip


def _version_of(python: str) -> tuple[str, ...]:
    return (python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])")


PYTHON = Language(
    Recipe(name="python", query="python-repl", exec=_python_exec, services=(JUPYTER,)),
    # munkres and unicodedata2 satisfy alternatives in python3-fonttools' (a
    # matplotlib dependency) Depends whose first choices would pull in SciPy, its
    # compiler Pythran and python3-dev: ~600 MB that nobody asked for.
    packages=(
        "python3",
        "python3-numpy",
        "python3-matplotlib",
        "python3-munkres",
        "python3-unicodedata2",
        "python3-notebook",
    ),
    aliases=("python3",),
    # 30 s per execution: an interactive sandbox, not a batch farm. Agents may
    # enforce less (spec 9: labels are defaults/maximums).
    limits=Limits(cores=4, memory="2g", timeout=30),
    # NumPy's BLAS would otherwise start a thread per host core, whatever the
    # container's CPU quota.
    corecount=BLAS_THREADS,
    version_command=_version_of("python3"),
)

# The machine-learning images: the same Python kernel, more packages.
#
# NumPy, pandas, scikit-learn, matplotlib and PyTorch (a CPU build) come from Debian;
# TensorFlow is not packaged by Debian, so its CPU wheel comes from PyPI, pinned to the
# last release line that accepts Debian's NumPy 1.x (Keras 2 ships with it).
PYTHON_ML = Language(
    Recipe(
        name="python-ml", query="python-repl", exec=_python_exec, services=(JUPYTER, TENSORBOARD)
    ),
    toolchain="python",
    only_suites=("bookworm",),
    packages=(
        "python3",
        "python3-pip",
        "python3-numpy",
        "python3-pandas",
        "python3-sklearn",
        "python3-matplotlib",
        "python3-munkres",
        "python3-unicodedata2",
        "python3-torch",
        "python3-notebook",
    ),
    pip_packages=("tensorflow-cpu==2.15.1",),
    also_named=("python-tensorflow", "python-pytorch"),
    # Importing TensorFlow alone takes seconds.
    limits=Limits(cores=4, memory="4g", timeout=120),
    env=(("TF_CPP_MIN_LOG_LEVEL", "2"),),
    corecount=f"{BLAS_THREADS},TF_NUM_INTRAOP_THREADS",
    version_command=_version_of("python3"),
)

# Caffe (CPU_ONLY) is packaged by Debian up to bullseye only; MXNet never was, and its
# last release (1.9.1, the project is retired) needs NumPy < 1.24: both fit bullseye's
# Python 3.9 and NumPy 1.19, and nothing newer.
PYTHON_DL = Language(
    Recipe(name="python-dl", query="python-repl", exec=_python_exec),
    toolchain="python",
    suite="bullseye",
    packages=("python3", "python3-pip", "python3-numpy", "python3-caffe"),
    pip_packages=("mxnet==1.9.1", "graphviz==0.8.4"),
    also_named=("python-caffe", "python-mxnet"),
    limits=Limits(cores=4, memory="2g", timeout=60),
    corecount=f"{BLAS_THREADS},MXNET_CPU_WORKER_NTHREADS",
    version_command=_version_of("python3"),
)

PYTHON2_KEYWORDS = words(
    "and as assert break class continue def del elif else except exec finally "
    "for from global if import in is lambda not or pass print raise return try "
    "while with yield True False None len range xrange raw_input input open "
    "unicode str int float dict list set tuple sorted enumerate zip"
)

# Debian 12 dropped Python 2: its image comes from bullseye whatever the configured suite.
PYTHON2 = Language(
    script("python2", "python2", "py", keywords=PYTHON2_KEYWORDS),
    suite="bullseye",
    packages=("python2",),
    limits=Limits(cores=2, memory="1g", timeout=30),
    version_command=_version_of("python2"),
)
