"""The same smoke test of the Explorer in Notebook 7 and in Voila."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.browser

STEPS = 60


def test_notebook7_smoke(notebook_server, page, explorer_page, screenshots):
    page.goto(f"{notebook_server.url}/notebooks/quickstart.ipynb")
    page.wait_for_function(
        "() => { const name = document.querySelector('.jp-Toolbar-kernelName');"
        " const state = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        " return name && state && !/No Kernel|Connecting/.test(name.textContent)"
        " && state.getAttribute('data-status') === 'idle'; }", timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    ex = explorer_page(page).wait_visible()
    ex.wait_count("step 20 / 20")
    ex.smoke(STEPS, screenshots, "notebook7")


def test_voila_smoke(voila_server, page, explorer_page, screenshots):
    page.goto(voila_server.url + "/", timeout=300_000)  # Voila runs the notebook before it shows it
    ex = explorer_page(page).wait_visible()
    ex.wait_count("step 20 / 20")
    ex.smoke(STEPS, screenshots, "voila")
