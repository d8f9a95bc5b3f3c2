"""The official client's ``run`` with files: upload, then a batch run (spec 4.6, 11 item 2)."""

from __future__ import annotations

from pathlib import Path

from ._support import RunningCrucible, cli

MAIN_C = '#include <stdio.h>\nint main(void) { printf("batch says %d\\n", 6 * 7); return 0; }\n'


def test_run_c_file(crucible_server: RunningCrucible, tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text(MAIN_C)
    result = cli(crucible_server, "run", "--rm", "c", "main.c", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "batch says 42" in result.stdout


def test_run_with_a_makefile(crucible_server: RunningCrucible, tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text(MAIN_C.replace("batch says", "make says"))
    (tmp_path / "Makefile").write_text("main: main.c\n\tgcc -o main main.c\n")
    result = cli(
        crucible_server,
        "run", "--rm", "c", "main.c", "Makefile", "--build", "make", "--exec", "./main",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gcc -o main main.c" in result.stdout  # make's build log comes first
    assert "make says 42" in result.stdout
    assert result.stdout.index("gcc -o main") < result.stdout.index("make says 42")


def test_run_reports_a_compile_error(crucible_server: RunningCrucible, tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("int main(void) { return oops; }\n")
    result = cli(crucible_server, "run", "--rm", "c", "main.c", cwd=tmp_path)
    assert "oops" in result.stdout + result.stderr  # the compiler's message reaches the user
