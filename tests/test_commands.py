"""The top floor (``commands/``): one entry ``python -m commands <command>``, the Makefile's recipes go through it,
the convert command's own checks after the stages, and its console table."""
from __future__ import annotations

import re
import subprocess
from types import SimpleNamespace

import pytest

from commands import COMMANDS
from commands.__main__ import main
from commands.console import human_size, stage_table
from commands.convert import post_conversion_checks
from contracts.paths import PROJECT_ROOT
from converters.pipeline import StageResult


def test_the_entry_lists_every_command(capsys):
    assert main(["--help"]) == 0
    listed = re.findall(r"^  (\S+)  ", capsys.readouterr().out, re.M)
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("argv, what", [([], "no command given"), (["convrt"], "unknown command 'convrt'")])
def test_an_unknown_or_missing_command_is_bad_input(capsys, argv, what):
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: {what} (one of: convert, validate")


def test_a_command_gets_its_own_arguments(capsys):
    """The dispatcher hands the rest of the line to the command (here: its own bad-input exit)."""
    with pytest.raises(SystemExit) as stop:
        main(["pruning-probe", "--no-such-option"])
    assert stop.value.code == 2
    assert "python -m commands pruning-probe" in capsys.readouterr().err


def test_every_makefile_recipe_runs_a_command_of_the_entry():
    """``make -n``: convert, validate, accept, check, bench, js-check, zoo and demo each run ``-m commands <name>``
    with a name the entry knows (the installed ``nanodet-tfjs`` has the same commands)."""
    for target in ("convert", "validate", "accept", "check", "bench", "js-check", "zoo", "demo"):
        out = subprocess.run(["make", "-n", target, "MODEL=m-416"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=60).stdout
        used = re.findall(r"-m commands (\S+)", out)
        assert used == [target], (target, out[-500:])


def test_the_convert_command_names_what_it_skips(capsys):
    args = SimpleNamespace(no_audit=True, no_validate=True, images=None, annotations=None, limit=None,
                           no_localize=False)
    assert post_conversion_checks(args, None, PROJECT_ROOT / "no-such-folder") == {}
    assert capsys.readouterr().err.splitlines() == ["audit: skipped (--no-audit)",
                                                    "validation: skipped (--no-validate)"]


def test_the_stage_table():
    rows = [StageResult("onnx", "model.onnx", 3_900_000, 2.04, False),
            StageResult("tfjs", "tfjs/model.json", 512, 0.0, True, reused_from="m-416-float16")]
    assert stage_table(rows).splitlines() == [
        "stage  output           size    seconds  cached",
        "-----  ---------------  ------  -------  -------------------",
        "onnx   model.onnx       3.7 MB  2.0      no",
        "tfjs   tfjs/model.json  512 B   0.0      yes (m-416-float16)",
    ]
    assert [human_size(n) for n in (0, 1023, 1024, 5 * 1024 ** 3)] == ["0 B", "1023 B", "1.0 KB", "5.0 GB"]
