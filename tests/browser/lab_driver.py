"""Driving JupyterLab in a page, shared by the browser tests (tests/browser is on sys.path)."""
from __future__ import annotations

import json
import re


def wait_for_kernel(page, timeout=120_000):
    # The indicator says "idle" before a kernel exists ("No Kernel"): wait for a named, idle one.
    page.wait_for_function(
        "() => { const name = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar-kernelName');"
        " const state = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
        " return name && state && !/No Kernel|Connecting/.test(name.textContent)"
        " && state.getAttribute('data-status') === 'idle'; }", timeout=timeout)


def run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()


def open_and_run_all(page, server, path, workspace=None) -> None:
    """Open `path` (in a workspace of its own when named: the default one may restore other tests'
    notebooks, and "Run All Cells" would then run whichever is active), wait for its kernel, run it."""
    where = f"/lab/workspaces/{workspace}/tree/{path}" if workspace else f"/lab/tree/{path}"
    page.goto(f"{server.url}{where}")
    wait_for_kernel(page)
    run_all_cells(page)


def write_notebook(root, name: str, cells: list[str]) -> str:
    """A notebook of code cells (Python 3 kernel) at root/name; returns name."""
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
                    for src in cells],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    (root / name).write_text(json.dumps(nb))
    return name


def end_sessions(server, path: str) -> None:
    """Shut down the kernels of `path`: leave no kernel of a test running on the shared server."""
    for session in server.api("GET", "/api/sessions") or []:
        if session.get("path") == path:
            server.api("DELETE", f"/api/sessions/{session['id']}")


WIDGET_ERRORS = ("Error setting state", "Could not create", "Failed to create view")  # the widget manager's own words


def widget_errors(console):
    """Console lines that say our front end failed.

    A throw inside a trait-change handler aborts the rest of that state update, so a test can pass
    by timing alone while the page is broken. Uncaught errors raised inside the host app's own
    bundles (Notebook 7 logs one while loading its settings) are not ours and are left out.
    """
    def ours(line):
        if line.startswith("pageerror:"):
            return "/static/" not in line
        return any(text in line for text in WIDGET_ERRORS)
    return [line for line in console if ours(line)]


def new_page(browser):
    """(context, page, console lines) with the viewport and timeout every browser test uses."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error} | {error.stack}"))
    return context, page, console


def set_theme(page, name):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Settings$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Theme$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{name}$")).click()
    # JupyterLab shows its splash over the page while it swaps themes: screenshots wait for it to go
    light = "true" if "Light" in name else "false"
    page.wait_for_function(f"() => document.body.dataset.jpThemeLight === '{light}'")
    page.wait_for_function("() => !document.getElementById('jupyterlab-splash')")


def leave_as_found(page, server, path: str) -> None:
    """Leave the shared server as found: light theme (a saved setting) and no kernel of `path` running."""
    try:
        if page.evaluate("() => document.body.dataset.jpThemeLight") == "false":
            set_theme(page, "JupyterLab Light")
    finally:
        end_sessions(server, path)
