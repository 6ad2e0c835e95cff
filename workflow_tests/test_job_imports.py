"""Table and figure jobs import neither torch nor MONAI: each would pay seconds of start-up for nothing."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIGHT_SCRIPTS = ["aggregate.py", "paper_tables.py", "ablation_table.py", "selection_stats.py", "latent_figure.py",
                 "allocation_aggregate.py"]


def imported_modules(script: Path) -> list[str]:
    tree = ast.parse(script.read_text())
    return sorted({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
                  | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names})


@pytest.mark.parametrize("name", LIGHT_SCRIPTS)
def test_light_jobs_import_no_torch_or_monai(name):
    modules = imported_modules(REPO / "scripts" / name)
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + \
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", (name, modules, out.stdout)
