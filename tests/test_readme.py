"""The README's worked example runs as written."""

import pathlib
import re


def test_readme_worked_example_runs(capsys):
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    best = float(re.search(r"best cost (\S+)", out).group(1))
    mdpo_best = float(re.search(r"MDPO best cost (\S+)", out).group(1))
    # Optimum (least squares): cost 0.0439; the prior's typical cost is in the hundreds. Measured
    # with key 0: TSMC 0.086, MDPO 0.071 (16 x 200, default noise), so these bounds keep a margin.
    assert best < 0.15 and mdpo_best < 0.1
