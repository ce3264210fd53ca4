"""The README's Python example runs verbatim, so the README and the API cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    """The first ```python block under '## Python API'."""
    text = README.read_text()
    section = text[text.index("\n## Python API\n") :]
    section = section[: (m.start() if (m := re.search(r"\n## ", section[1:])) else len(section))]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_readme_python_example_runs_verbatim_and_again(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = compile(readme_example(), str(README) + ":Python API", "exec")
    exec(code, {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "220 images;" in out and "torch.Size([2, 32, 4, 4])" in out and "dead" in out
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "features.sqlite").is_file()
    db = (tmp_path / "run" / "features.sqlite").stat().st_mtime_ns
    exec(code, {"__name__": "readme_example"})  # a notebook cell run twice: every stage reuses its output
    assert "220 images;" in capsys.readouterr().out and (tmp_path / "run" / "features.sqlite").stat().st_mtime_ns == db
