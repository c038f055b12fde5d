"""Packaging: ``pip install --no-deps -r requirements.lock && pip install --no-deps .`` gives the ``nanodet-tfjs``
command. pyproject's dependencies are the lock's versions; the wheel carries every package, the JS runner and
module (with the npm lock they are installed from on first use) and the model configs; installed, the command
answers and finds its configs and JS files outside any work tree."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from contracts.paths import PROJECT_ROOT

PACKAGES = ("contracts", "nanodet_ref", "patches", "converters", "validation", "commands")
JS_FILES = ("run_graph_model.mjs", "nanodet.mjs", "nanodet_decode.mjs", "nanodet_warp.mjs", "nanodet_module_check.mjs",
            "detect.mjs", "package.json", "package-lock.json", "demo/index.html", "demo/demo.js", "demo/run_in_chromium.mjs",
            "run_onnx_web.mjs", "browser/bench.html", "browser/page.mjs", "browser/bundle.mjs", "browser/chromium.mjs",
            "browser/wasm_threads.mjs", "browser/runtime.mjs", "browser/worker.mjs", "demo/detector_host.mjs",
            "demo/detector_worker.mjs", "browser/worker_client.mjs",
            "browser/timing.mjs", "node_io.mjs")
DATA = "share/nanodet-tfjs"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_versions() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.split("+")[0]     # torch 2.13.0+cpu satisfies ==2.13.0
    return pins


def test_pyproject_pins_every_direct_dependency_to_the_lock():
    deps = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = lock_versions()
    wrong = []
    for dep in deps:
        name, sep, version = dep.partition("==")
        if not sep or pins.get(canonical(name)) != version:
            wrong.append(f"{dep} (lock: {pins.get(canonical(name), 'absent')})")
    assert wrong == []
    assert "opencv-python-headless" in {canonical(d.partition("==")[0]) for d in deps}


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the project's sources (a build writes build/ and *.egg-info beside them)."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "node_modules", "*.pyc")
    for name in (*PACKAGES, "configs", "js"):
        shutil.copytree(PROJECT_ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "requirements.lock"):
        shutil.copy2(PROJECT_ROOT / name, src / name)
    isolation = [] if importlib.util.find_spec("setuptools.command.bdist_wheel") else ["--use-pep517"]
    # without a wheel-building setuptools in the venv, pip fetches pyproject's build requirement from its index
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q", "-w",
           str(out / "dist"), *(["--no-build-isolation"] if not isolation else []), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (out / "dist").glob("nanodet_tfjs-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_packages_the_js_files_the_configs_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    assert "commands/__main__.py" in names
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    assert {f"{DATA}/js/{f}" for f in JS_FILES} <= data
    configs = {f"{DATA}/configs/{p.name}" for p in (PROJECT_ROOT / "configs").glob("*.yml")}
    assert configs and configs <= data
    assert not any("node_modules" in n or n.startswith("tests/") for n in names)
    assert re.search(r"^nanodet-tfjs = commands\.__main__:main$", entry_points, re.M)


def test_the_installed_command_answers_outside_the_work_tree(wheel, tmp_path):
    """A throwaway venv on top of this one's site-packages (the locked dependencies), the wheel installed with
    --no-deps: ``nanodet-tfjs`` lists the Makefile's commands, and finds the configs and the JS files it was
    installed with (not the work tree's)."""
    import sysconfig

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.run([bin_dir / "python", "-c", ask], capture_output=True, text=True, check=True,
                                  timeout=120).stdout.strip())
    (purelib / "locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps",
                           "--disable-pip-version-check", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "elsewhere"
    out.mkdir()
    run = subprocess.run([bin_dir / "nanodet-tfjs", "--help"], cwd=out, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for command in ("convert", "validate", "accept", "check", "bench", "js-check"):
        assert re.search(rf"^  {command} ", run.stdout, re.M), command
    run = subprocess.run([bin_dir / "nanodet-tfjs", "convert", "--help"], cwd=out, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "--model" in run.stdout, run.stderr[-2000:]
    where = subprocess.run([bin_dir / "python", "-c", "from contracts import js_assets, paths\n"
                            "print(paths.in_work_tree(), paths.configs_dir(), js_assets.packaged_js(), "
                            "paths.artifacts_dir(), sep='\\n')"],
                           cwd=out, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    in_tree, configs, js, artifacts = where.stdout.split("\n")[:4]
    assert in_tree == "False"
    assert Path(configs, "m-416.yml").is_file() and str(PROJECT_ROOT) not in configs
    assert Path(js, "package-lock.json").is_file() and str(PROJECT_ROOT) not in js
    assert artifacts == str(out / "artifacts")


def js_source(folder: Path, dependencies: dict) -> Path:
    """A packaged-JS-like folder: a script, package.json and a lock without packages (npm ci needs no network)."""
    folder.mkdir()
    (folder / "run.mjs").write_text("console.log('ok')\n")
    (folder / "package.json").write_text(json.dumps({"name": "x", "version": "1.0.0", "dependencies": dependencies}))
    (folder / "package-lock.json").write_text(json.dumps({"name": "x", "version": "1.0.0", "lockfileVersion": 3,
                                                          "requires": True,
                                                          "packages": {"": {"name": "x", "version": "1.0.0"}}}))
    return folder


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_first_use_installs_the_npm_packages_into_the_folder_it_names(tmp_path, capsys):
    from contracts.js_assets import prepare_js_dir

    target = tmp_path / "cache" / "js-1"
    prepare_js_dir(js_source(tmp_path / "packaged", {}), target)
    assert (target / "run.mjs").is_file() and (target / "node_modules" / ".installed").is_file()
    assert str(target) in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm not installed")
def test_a_failed_npm_install_leaves_no_folder_that_looks_finished(tmp_path):
    from contracts.errors import UserError
    from contracts.js_assets import prepare_js_dir

    target = tmp_path / "cache" / "js-1"
    with pytest.raises(UserError, match=r"js-1: npm ci failed"):
        prepare_js_dir(js_source(tmp_path / "packaged", {"left-pad": "1.3.0"}), target)   # lock out of sync
    assert list((tmp_path / "cache").iterdir()) == []
