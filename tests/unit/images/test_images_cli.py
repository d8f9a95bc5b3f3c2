"""`crucible images ...` argument handling (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crucible.agent.images.cli import format_created, format_size
from crucible.cli import build_parser, main


def test_parser_registers_images_commands() -> None:
    args = build_parser().parse_args(["images", "build", "python", "c", "--state-dir", "/x"])
    assert args.langs == ["python", "c"]
    assert args.state_dir == "/x"
    assert not args.rebuild
    args = build_parser().parse_args(["images", "list", "--all", "--json"])
    assert args.all and args.json


def test_unknown_recipe_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "build", "python", "cobol"]) == 2
    assert "cobol" in capsys.readouterr().err


def test_unsupported_suite_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "crucible.toml"
    config.write_text('[images]\nbase_suite = "potato"\n')
    assert main(["images", "build", "all", "--config", str(config)]) == 2
    assert "potato" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1500, "1.5 kB"), (112_900_000, "112.9 MB"), (2_5e9, "25.0 GB")],
)
def test_format_size(size: float, text: str) -> None:
    assert format_size(int(size)) == text


def test_format_created() -> None:
    assert len(format_created("2024-05-01T10:20:30.123456789Z")) == len("2024-05-01 10:20")
    assert format_created("2024-05-01T10:20:30Z").startswith("2024-05-0")
    assert format_created("garbage") == "garbage"
