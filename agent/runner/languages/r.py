"""R: each query snippet runs with Rscript."""

from __future__ import annotations

from .schema import BLAS_THREADS, SLOW_START, Language, script, words

KEYWORDS = words(
    "if else repeat while function for in next break TRUE FALSE NULL Inf NaN "
    "NA library print cat paste paste0 c list data.frame matrix vector length "
    "sum mean median sapply lapply apply seq rep"
)

R = Language(
    script("r", "Rscript", "R", "main.r", keywords=KEYWORDS),
    packages=("r-base-core",),
    aliases=("R",),
    limits=SLOW_START,
    corecount=BLAS_THREADS,
    version_command=(
        "Rscript",
        "-e",
        "cat(R.version$major, strsplit(R.version$minor, '.', fixed=TRUE)[[1]][1], sep='.')",
    ),
)
