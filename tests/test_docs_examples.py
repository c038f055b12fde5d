"""The README and the pages of docs/ run as written from the project root.

- The README's JavaScript quick start runs on a converted m-416 exactly as printed (from a stand-in project root
  whose ``artifacts/m-416`` is the session's conversion) and prints what the README shows beside it.
- The README's results table is what that conversion's validation measured.
- Every ``.venv/bin/python -m ...`` command shown answers ``--help``; every ``make`` command names a target and
  variables the Makefile has; every other command's script exists.
- Every link from the README and docs/ to a project file (and heading) exists, and so does every ``docs/*.md``
  that the code names.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
PAGES = [README, *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
PYTHON = ".venv/bin/python"
QUICK_START = "## JavaScript quick start"
README_MAX_BYTES = 10 * 1024


def rel(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


def code_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if m.group(1) in languages]


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped, ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def inline_commands(text: str) -> list[str]:
    """Commands written inline (`make ...`, `.venv/bin/python -m ...`, `node js/...`), outside code blocks."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [span for span in re.findall(r"`([^`\n]+)`", prose)
            if re.match(rf"(make [a-z]|{re.escape(PYTHON)} -m \w|node js/)", span)]


def shown_commands() -> list[tuple[str, str]]:
    """(page, command) for every command in a bash / sh block of the README and docs/, and every inline one."""
    out = []
    for page in PAGES:
        text = page.read_text()
        out += [(rel(page), cmd) for block in code_blocks(text, ("bash", "sh")) for cmd in shell_commands(block)]
        out += [(rel(page), cmd) for cmd in inline_commands(text)]
    return out


def section(text: str, heading: str) -> str:
    return text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]


# -- the JavaScript quick start ----------------------------------------------------------------------------------

def detection_lines(text: str) -> list[tuple[str, float, list[float]]]:
    """``class score [x1, y1, x2, y2]`` lines as js/detect.mjs prints them."""
    found = re.findall(r"^(\S+)\s+([0-9.]+)\s+\[([^\]]*)\]\s*$", text, re.M)
    return [(name, float(score), [float(v) for v in box.split(",")]) for name, score, box in found]


@pytest.fixture
def project_like_root(tmp_path, converted_m416, shared) -> Path:
    """A stand-in for the project root: every entry of the real one, but ``artifacts/m-416`` is the session's
    conversion (the README's path; the real artifacts/ folder is left alone), with the shared folder beside it."""
    root = tmp_path / "project"
    root.mkdir()
    for entry in PROJECT_ROOT.iterdir():
        if entry.name != "artifacts":
            (root / entry.name).symlink_to(entry)
    (root / "artifacts").mkdir()
    (root / "artifacts" / "m-416").symlink_to(Path(converted_m416).resolve())
    (tmp_path / "shared").symlink_to(Path(shared).resolve())
    return root


@pytest.mark.slow
def test_the_readme_javascript_quick_start_runs_as_written(project_like_root):
    quick = section(README.read_text(), QUICK_START)
    commands = [c for block in code_blocks(quick, ("bash",)) for c in shell_commands(block)]
    assert len(commands) == 1 and commands[0].startswith("node js/"), commands
    shown = detection_lines(code_blocks(quick, ("text",))[0])
    assert shown, "the README shows no output beside its quick start"
    r = subprocess.run(shlex.split(commands[0]), cwd=project_like_root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = detection_lines(r.stdout)
    assert [g[0] for g in got] == [s[0] for s in shown], (r.stdout, shown)
    for (_, score, box), (_, want_score, want_box) in zip(got, shown):
        assert abs(score - want_score) <= 2e-3, (r.stdout, shown)
        assert max(abs(a - b) for a, b in zip(box, want_box)) <= 1.0, (r.stdout, shown)


@pytest.mark.slow
def test_every_node_example_of_the_docs_runs(project_like_root):
    commands = [(page, c) for page, c in shown_commands() if c.startswith("node js/detect.mjs ")]
    assert commands
    for page, command in commands:
        r = subprocess.run(shlex.split(command), cwd=project_like_root, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (page, command, r.stderr[-2000:])
        assert detection_lines(r.stdout), (page, command, r.stdout)


@pytest.mark.slow
def test_the_readme_results_table_is_what_the_conversion_measured(converted_m416):
    block = code_blocks(section(README.read_text(), "## Results"), ("text",))[0]
    rows = [line.split() for line in block.splitlines()[2:] if line.strip()]
    report = json.loads((Path(converted_m416) / "validation.json").read_text())
    assert [r[0] for r in rows] == list(report["stages"]), rows
    for row in rows:
        stage = report["stages"][row[0]]
        result, matched, unmatched, ap, ap50 = row[1], row[-4], row[-3], row[-2], row[-1]
        assert result == ("PASS" if stage["pass"] else "FAIL"), row
        assert matched == f"{stage['matched_fraction']:.4f}", row
        assert unmatched == f"{stage['explained']}/{stage['unexplained']}", row
        assert (ap, ap50) == (f"{stage['ap']:.4f}", f"{stage['ap50']:.4f}"), row


# -- every shell command shown -----------------------------------------------------------------------------------

def makefile_targets_and_variables() -> tuple[set[str], set[str]]:
    text = (PROJECT_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))
    variables = set(re.findall(r"\$\(([A-Z_]+)\)", text)) | set(re.findall(r"^([A-Z_]+)\s*\?=", text, re.M))
    return targets, variables


def test_the_commands_shown_are_ones_the_project_has():
    targets, variables = makefile_targets_and_variables()
    commands = shown_commands()
    assert commands
    for page, command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            goals = [w for w in words[1:] if "=" not in w]
            assigned = [w.split("=", 1)[0] for w in words[1:] if "=" in w]
            assert goals and set(goals) <= targets, (page, command)
            assert set(assigned) <= variables, (page, command, set(assigned) - variables)
            r = subprocess.run(["make", "-n", "--no-print-directory", *words[1:]], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (page, command, r.stderr[-1000:])
        elif words[0] == PYTHON:
            assert words[1] == "-m", (page, command)
        elif words[0] in ("node", "bash"):
            assert (PROJECT_ROOT / words[1]).is_file(), (page, command)
        else:
            pytest.fail(f"{page}: `{command}`: commands shown are make, {PYTHON} -m, node or bash ones")


def test_every_python_command_shown_answers_help():
    python = PROJECT_ROOT / PYTHON
    if not python.exists():
        pytest.skip(f"{PYTHON} absent (make venv)")
    seen = set()
    for page, command in shown_commands():
        words = shlex.split(command)
        if words[0] != PYTHON:
            continue
        module, rest = words[2], words[3:]
        sub = rest[:1] if rest and re.fullmatch(r"[a-z][a-z0-9-]*", rest[0]) else []
        if (module, *sub) in seen:
            continue
        seen.add((module, *sub))
        r = subprocess.run([str(python), "-m", module, *sub, "--help"], cwd=PROJECT_ROOT, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0 and "usage" in r.stdout.lower(), (page, command, r.stderr[-2000:])
    assert seen


# -- links and size ----------------------------------------------------------------------------------------------

def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
            for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_links_to_project_files_exist():
    checked = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), (rel(page), target)
            if anchor:
                assert anchor in heading_anchors(file.read_text()), (rel(page), target)
            checked += 1
    assert checked


PROJECT_DIRS = ("configs", "contracts", "nanodet_ref", "patches", "converters", "validation", "commands", "js", "tests",
                "docs", ".ci")


def test_the_project_paths_named_in_the_docs_exist():
    """A file or folder of the project named in backticks (`converters/tf_nhwc/`, `tests/test_patches.py`) is there:
    modules that move take their mentions along."""
    named = 0
    for page in PAGES:
        for span in re.findall(r"`([^`\n]+)`", page.read_text()):
            first = span.split("/", 1)[0]
            if first in PROJECT_DIRS and "/" in span and not re.search(r"[<>*\s]|node_modules", span):
                assert (PROJECT_ROOT / span).exists(), (rel(page), span)
                named += 1
    assert named


def test_the_docs_pages_the_code_names_exist():
    sources = [p for d in ("contracts", "nanodet_ref", "patches", "converters", "validation", "commands", "tests")
               for p in (PROJECT_ROOT / d).rglob("*.py")]
    sources += [p for pattern in ("js/*.mjs", "js/demo/*", ".ci/*", "Makefile", "pyproject.toml")
                for p in PROJECT_ROOT.glob(pattern) if p.is_file()]
    for path in sources:
        for name in re.findall(r"docs/[\w.-]+\.md", path.read_text(errors="replace")):
            assert (PROJECT_ROOT / name).is_file(), (rel(path), name)


def test_the_readme_is_an_entrance():
    """One page to start from: small, with the two set-up commands and links to the rest."""
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES
    setup = code_blocks(section(text, "## Set-up: two commands"), ("bash",))[0]
    assert [c.split()[:2] for c in shell_commands(setup)] == [["make", "convert"], ["make", "test"]]
