"""`import nbdiffuse` does not pay for the shapes evaluator's scipy (~0.6 s); its names load on first use."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True,
                          timeout=300).stdout


def test_import_nbdiffuse_does_not_import_scipy():
    out = _run("import sys, nbdiffuse; print('scipy' in sys.modules, nbdiffuse.__file__)")
    assert out.split()[0] == "False", out
    assert Path(out.split()[1]).resolve().is_relative_to(ROOT), out


def test_the_evaluator_names_still_work_through_the_package():
    out = _run("import sys, nbdiffuse as nbd\n"
               "caption = 'big red circle on the left, white background'\n"
               "image = nbd.shapes.render(caption, seed=0)\n"
               "print(all(nbd.shapes.score(image, caption).values()),\n"
               "      nbd.shapes.adherence([image], [caption])['joint'],\n"
               "      isinstance(nbd.shapes.measure(image), nbd.shapes.Measurement),\n"
               "      'scipy' in sys.modules, 'measure' in dir(nbd.shapes))")
    assert out.split() == ["True", "1.0", "True", "True", "True"], out
