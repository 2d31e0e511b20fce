"""The README's quick start runs as written."""

import pathlib
import re


def test_readme_quick_start_runs():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
