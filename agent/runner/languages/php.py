"""PHP: each query snippet runs as a script, ``<?php`` added when it lacks one."""

from __future__ import annotations

from .schema import Language, Limits, script, words

KEYWORDS = words(
    "abstract array as break case catch class const continue declare default do "
    "echo else elseif empty endfor endforeach endif endwhile extends final "
    "finally fn for foreach function global if implements include interface "
    "isset list match namespace new print private protected public require "
    "return static switch throw trait try unset use var while yield count "
    "strlen implode explode printf sprintf"
)


def _wrap_php(code: str) -> str:
    return code if code.lstrip().startswith("<?") else "<?php\n" + code


PHP = Language(
    script("php", "php", "php", "index.php", wrap=_wrap_php, keywords=KEYWORDS),
    packages=("php-cli",),
    limits=Limits(cores=2, memory="512m", timeout=30),
    version_command=("php", "-r", "echo PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION;"),
)
