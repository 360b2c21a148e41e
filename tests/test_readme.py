"""The README's command and code blocks run as written, in order, in a fresh directory.

The two blocks at the top (`pip install ... && l2o demo`, `pip install ... && pytest`) are the ones
CI itself runs, so they are left out here (`l2o demo` has its own test); every other ``bash`` block
runs in a shell and every ``python`` block in one shared namespace, as a reader pasting them one
after another would (the PyTorch and Keras blocks only where torch and keras are installed). That
takes about six minutes on two cores (it trains and tunes for real), so it is a slow test
(``L2O_RUN_SLOW=1``); the default suite checks that every ``l2o`` command of the README parses and
resolves to a valid configuration, and that every Python block compiles.
"""

import importlib.util
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from l2o import cli, train_settings
from l2o.cli.commands import train_arguments

README = Path(__file__).resolve().parents[1] / "README.md"
DATA = Path(os.environ.get("L2O_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
# Values for the shell variables the docs' recipes loop over (seeds, architectures, rates).
SHELL_EXAMPLES = {"S": "1", "A": "RNNProp", "LR": "0.003"}
HAS_MNIST = any((DATA / folder / "train-images-idx3-ubyte.gz").exists() for folder in (".", "mnist"))


def readme_blocks(path: Path = README) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block with a language in ``path``, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", path.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_readme_opens_with_the_two_commands():
    blocks = readme_blocks()
    assert blocks[0] == ("bash", "pip install -e . && l2o demo\n")
    assert blocks[1] == ("bash", "pip install -e '.[test]' && pytest\n")


def _l2o_commands(code: str) -> list[list[str]]:
    """The arguments of every ``l2o`` command in a bash block (comments dropped, continued and
    multi-line quoted lines joined, environment assignments before the command skipped)."""
    commands, pending = [], ""
    code = re.sub(r"\$\{?(\w+)\}?", lambda match: SHELL_EXAMPLES.get(match[1], match[0]), code)
    for line in code.replace("\\\n", " ").splitlines():
        try:
            words = shlex.split(pending + line, comments=True)
        except ValueError:  # a quotation that closes on a later line
            pending += line + "\n"
            continue
        pending = ""
        while words and re.fullmatch(r"\w+=\S*", words[0]):
            words = words[1:]
        if words and words[0] == "l2o":
            commands.append(words[1:])
    return commands


def _check_commands(code: str, monkeypatch) -> int:
    """Parses every ``l2o`` command of a bash block and resolves its training settings; returns
    how many there were."""
    commands = _l2o_commands(code)
    for argv in commands:
        args = cli._make_parser().parse_args(argv)
        if args.command == "train":  # a run's config.json is not here
            monkeypatch.setattr(train_settings, "read_json_object", lambda path: {})
            train_arguments(args)
    return len(commands)


def test_every_readme_command_parses_and_resolves(monkeypatch):
    """Every ``l2o`` line is a valid command whose settings resolve (nothing is run)."""
    checked = 0
    for language, code in readme_blocks()[2:]:
        if language == "python":
            compile(code, "README.md", "exec")
        checked += _check_commands(code, monkeypatch) if language == "bash" else 0
    assert checked >= 7


@pytest.mark.parametrize("document", ["RESULTS.md", "multi_device.md"])
def test_every_documented_command_parses_and_resolves(document, monkeypatch):
    """The ``l2o`` commands of the docs (the reproductions' recipes) still parse and resolve."""
    blocks = readme_blocks(README.parent / "docs" / document)
    checked = sum(_check_commands(code, monkeypatch) for language, code in blocks if language == "bash")
    assert checked >= {"RESULTS.md": 20}.get(document, 1)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MNIST, reason=f"MNIST files not found in {DATA} (a README command trains on MNIST)")
def test_every_readme_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environment = {**os.environ, "L2O_DATA_DIR": str(DATA)}
    namespace: dict = {}
    for language, code in readme_blocks()[2:]:
        if language == "bash":
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=environment,
                                  capture_output=True, text=True)
            assert done.returncode == 0, f"README block failed:\n{code}\n{done.stderr[-3000:]}"
        elif language == "python" and all(f"import {extra}" not in code or importlib.util.find_spec(extra)
                                          for extra in ("torch", "keras")):
            exec(compile(code, f"README.md python block {code.splitlines()[0]!r}", "exec"), namespace)
    assert (tmp_path / "runs" / "quad" / "best" / "optimizer.json").is_file()
    assert (tmp_path / "runs" / "quad-fixed" / "report.md").is_file()
