"""The quiet notebook runner of `make paper` (scripts/run_notebook.py), on small fake notebooks."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from era_core import paths

RUNNER = paths.ROOT / "scripts" / "run_notebook.py"


def fake_notebook(path: Path, body: str) -> Path:
    """A notebook with a tagged parameters cell, a Markdown cell and ``body`` as its last code cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n: int = 3")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# fake"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


# Noise as the real notebooks make it: text tqdm redraws (\r), a cursor-up sequence and a kernel warning.
NOISY = """
import sys, time, warnings
from tqdm import tqdm
for _ in tqdm(range(n * 20), file=sys.stderr, mininterval=0):
    time.sleep(0.001)
print("moved\\x1b[Aup")
warnings.warn("a kernel warning")
time.sleep(1.5)
print("done", n)
"""


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def runner_cmd(log: Path, params: Path, notebook: Path, out: Path) -> list[str]:
    """The runner around the Makefile's papermill command line."""
    return [sys.executable, str(RUNNER), "--log", str(log), "--", sys.executable, "-m", "papermill", "-k", "python3",
            "--cwd", ".", "--log-output", "--no-progress-bar", "-f", str(params), str(notebook), str(out)]


def run_runner(tmp_path: Path, notebook: Path, **popen) -> tuple[int, str, Path, Path]:
    """Run the runner with stdout to a file (as in CI); return (exit status, stdout, log, output)."""
    log, out = tmp_path / "executed" / f"{notebook.stem}.log", tmp_path / "executed" / f".{notebook.stem}.tmp.ipynb"
    params = tmp_path / "params.yaml"
    params.write_text("n: 4\n")
    stdout = tmp_path / f"{notebook.stem}.stdout"
    with open(stdout, "w") as fh:
        rc = subprocess.run(runner_cmd(log, params, notebook, out), stdout=fh, stderr=subprocess.STDOUT,
                            cwd=paths.ROOT, env=ENV, timeout=300).returncode
    return rc, stdout.read_bytes().decode(), log, out  # bytes: read_text would turn \r into \n


def test_output_to_a_file_has_one_start_and_one_end_line_and_no_redraws(tmp_path):
    nb = fake_notebook(tmp_path / "fake.ipynb", NOISY)
    rc, text, log, out = run_runner(tmp_path, nb)
    assert rc == 0, text
    assert "\r" not in text and "\x1b[A" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "▶ fake started"
    assert re.fullmatch(rf"✓ fake finished in \d+\.\ds; log: {re.escape(str(log))}", lines[1]), lines[1]
    # Everything else went to the log: the redraws, the warning and the cell output.
    logged = log.read_bytes().decode()  # read_text would turn \r into \n
    assert "\r" in logged and "a kernel warning" in logged and "done 4" in logged
    executed = nbformat.read(out, as_version=4)
    assert any("done 4" in o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)


def test_a_failing_notebook_prints_its_log_and_last_error_and_exits_non_zero(tmp_path):
    nb = fake_notebook(tmp_path / "broken.ipynb", "print('before')\nraise ValueError(f'boom {n * 10}')")
    rc, text, log, _ = run_runner(tmp_path, nb)
    assert rc != 0
    lines = text.splitlines()
    assert lines[0] == "▶ broken started" and len([ln for ln in lines if "started" in ln]) == 1
    assert re.match(r"✗ broken failed after \d+\.\ds \(exit \d+\); log: ", lines[1]), lines[1]
    assert lines[1].endswith(str(log)) and log.is_file()
    assert lines[2].strip() == "ValueError: boom 40"
    assert "\x1b" not in text and "\r" not in text


def test_on_a_terminal_one_live_line_is_redrawn(tmp_path):
    nb = fake_notebook(tmp_path / "live.ipynb", "import time\ntime.sleep(3)")
    params = tmp_path / "params.yaml"
    params.write_text("n: 1\n")
    log, out = tmp_path / "live.log", tmp_path / "live.ipynb.out"
    master, slave = pty.openpty()
    proc = subprocess.Popen(runner_cmd(log, params, nb, out), stdout=slave, stderr=slave, cwd=paths.ROOT, env=ENV)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 300)
        if not ready:
            proc.kill()
            pytest.fail("the runner stopped writing for 300 s")
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) == 0
    os.close(master)
    text = b"".join(chunks).decode()
    assert "\r\x1b[K  … live: cell " in text and "/4, " in text  # 3 cells + papermill's injected one
    # Redraws never scroll: the only newlines are those of the start and end lines.
    assert text.count("\n") == 2
    assert text.startswith("▶ live started") and "✓ live finished in " in text
    assert "\x1b[A" not in text


def test_last_error_and_elapsed_helpers():
    sys.path.insert(0, str(RUNNER.parent))
    try:
        import run_notebook
    finally:
        sys.path.remove(str(RUNNER.parent))
    log = ("Executing Cell 3---\n\x1b[0;31mValueError\x1b[0m: first\nprogress 10%\r 50%\r\n"
           "papermill.exceptions.PapermillExecutionError: \nKeyError: 'missing'\nEnding Cell 3---\n")
    assert run_notebook.last_error(log) == "KeyError: 'missing'"
    assert run_notebook.last_error("just text\n\n") == "just text"
    assert run_notebook.elapsed(5.04) == "5.0s" and run_notebook.elapsed(75.3) == "1m15s"
    assert run_notebook.elapsed(3725) == "1h02m05s"
