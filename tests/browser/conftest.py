"""Real-browser fixtures: Jupyter servers on 127.0.0.1 and headless Chromium driven by Playwright.

Each server gets a free port, no token, no browser, and a temporary root holding a copy of the
quickstart notebook; it is stopped (with its kernels) when the session ends. The browser is the
first Chromium found of: Debian's `chromium`, Ubuntu's `chromium-browser`, Playwright's own download
(`python -m playwright install chromium`). With none, each browser test fails saying how to get one.
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "01_quickstart.ipynb"
NO_CHROMIUM = ("no Chromium for the browser tests (looked for `chromium`, `chromium-browser` and Playwright's "
               "own). Get one: `sudo apt install chromium` on Debian, or `python -m playwright install "
               "--with-deps chromium` on Ubuntu and elsewhere; or run the rest with `python -m pytest -m 'not browser'`")
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 90  # s for a server to answer on a loaded 2-core machine


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real Jupyter frontend in headless Chromium")


@functools.lru_cache(maxsize=None)
def find_chromium() -> str | None:
    """The Chromium to drive: Debian's, Ubuntu's (a snap behind `chromium-browser`), or Playwright's own."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        own = playwright.chromium.executable_path  # where `playwright install chromium` puts it
    return own if own and os.path.exists(own) else None


def pytest_runtest_setup(item):
    # before any fixture: no Jupyter server is started for a browser test that cannot run
    if "browser" in item.keywords and find_chromium() is None:
        pytest.fail(NO_CHROMIUM, pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One Jupyter-family server process serving a temporary root."""

    def __init__(self, kind: str, root: pathlib.Path, argv: list[str], port: int, env: dict, log: pathlib.Path):
        self.kind, self.root, self.port = kind, root, port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self._log = open(log, "wb")
        self.process = subprocess.Popen(argv, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.kind} did not answer on {self.url}{path} within {START_TIMEOUT} s:\n{self.log_tail()}")

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # jupyter servers shut their kernels down on SIGTERM
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def _environment(home: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env["OMP_NUM_THREADS"] = "1"  # 2 shared cores: contended torch threads run many times slower
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(home / "workspaces")
    settings = home / "settings"
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    # Save widget state with the notebook (for the reopen-without-kernel test); no news pop-ups.
    for plugin, values in {
        "@jupyter-widgets/jupyterlab-manager/plugin": {"saveState": True},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        target = settings / (plugin + ".jupyterlab-settings")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return env


def _start(kind: str, tmp_path_factory) -> Server:
    home = tmp_path_factory.mktemp(kind)
    root = home / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / "quickstart.ipynb")
    port = free_port()
    common = [f"--port={port}", "--no-browser"]
    server_opts = ["--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--ServerApp.password=",
                   "--ServerApp.disable_check_xsrf=True", "--ServerApp.allow_root=True",
                   f"--ServerApp.root_dir={root}", *common]
    jupyter = [sys.executable, "-m"]
    if kind == "lab":
        argv = [*jupyter, "jupyterlab", *server_opts]
    elif kind == "notebook":
        argv = [*jupyter, "notebook", *server_opts]
    else:
        argv = [*jupyter, "voila", str(root / "quickstart.ipynb"), "--Voila.ip=127.0.0.1", *common]
    server = Server(kind, root, argv, port, _environment(home), home / "server.log")
    try:
        if kind == "voila":  # voila runs the notebook for each page view: "/" is the test itself
            _wait_port(server)
        else:
            server.wait_ready("/api/status")
    except Exception:
        server.stop()
        raise
    return server


def _wait_port(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"voila exited with {server.process.returncode}:\n{server.log_tail()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", server.port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"voila did not listen on {server.port} within {START_TIMEOUT} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    server = _start("lab", tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture
def lab_notebook(lab_server):
    """lab_notebook(name, cells) -> the path of a notebook of those code cells on the Lab server;
    its kernels are shut down afterwards (no kernel of a test left running on the shared server)."""
    from lab_driver import end_sessions, write_notebook

    made = []

    def make(name: str, cells: list[str]) -> str:
        made.append(write_notebook(lab_server.root, name, cells))
        return made[-1]

    yield make
    for path in made:
        end_sessions(lab_server, path)


@pytest.fixture(scope="session")
def notebook_server(tmp_path_factory):
    server = _start("notebook", tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def voila_server(tmp_path_factory):
    server = _start("voila", tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(browser, request):
    from lab_driver import new_page, widget_errors

    context, page, console = new_page(browser)
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"FAILED_{request.node.name}.png"), full_page=True)
        print("browser console (last 30):\n" + "\n".join(console[-30:]))
    context.close()
    broken = widget_errors(console)
    assert not broken, "the page reported errors:\n" + "\n".join(broken)


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


# --- driving the Explorer in a page -------------------------------------------------------
WATCH_JS = """
(root) => {
  // Record every distinct picture the x0 canvas shows, checked on each animation frame.
  const canvas = root.querySelector('canvas[data-view="x0"]');
  const seen = new Set();
  window.__nbdSeen = seen;
  window.__nbdWatch = true;
  const hash = () => {
    if (!canvas.width) return null;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 2166136261;
    for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i], 16777619);
    return `${canvas.width}x${canvas.height}:${h >>> 0}`;
  };
  window.__nbdHash = hash;
  const tick = () => {
    const h = hash();
    if (h) seen.add(h);
    if (window.__nbdWatch) requestAnimationFrame(tick);
  };
  tick();
}
"""

PAINT_JS = """
async ([root, samples]) => {
  // Slider moved -> new frame painted. The input comes at a random moment of the display frame
  // (a setTimeout of 0-16 ms); the time runs until the first task after the next rendering
  // opportunity (rAF, then a message posted from it, which runs after that frame's paint).
  const slider = root.querySelector('.nbd-slider');
  const max = Number(slider.max);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const afterPaint = () => new Promise((resolve) => requestAnimationFrame(() => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(0);
  }));
  const total = [], sync = [], floor = [];
  let changed = 0;
  for (let i = 0; i < samples; i++) {
    // The browser's own floor: the same wait with nothing changed on the page.
    await sleep((i * 37) % 17);
    const f0 = performance.now();
    await afterPaint();
    floor.push(performance.now() - f0);
    await sleep((i * 37) % 17);
    const k = (i * 7) % (max + 1);
    const before = window.__nbdHash();
    const t0 = performance.now();
    slider.value = String(k);
    slider.dispatchEvent(new Event('input', { bubbles: true }));
    sync.push(performance.now() - t0);
    await afterPaint();
    total.push(performance.now() - t0);
    if (window.__nbdHash() !== before) changed++;
  }
  const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const round = (x) => Math.round(x * 100) / 100;
  return { median_ms: round(median(total)), median_draw_ms: round(median(sync)), max_ms: round(Math.max(...total)),
           median_floor_ms: round(median(floor)), changed, samples };
}
"""


DRAG_WATCH_JS = """
(root) => {
  // For real mouse drags: from each input event's timestamp to the task after its frame's paint.
  const slider = root.querySelector('.nbd-slider');
  window.__nbdDrag = [];
  slider.addEventListener('input', (e) => {
    const start = e.timeStamp;
    requestAnimationFrame(() => {
      const channel = new MessageChannel();
      channel.port1.onmessage = () => window.__nbdDrag.push(performance.now() - start);
      channel.port2.postMessage(0);
    });
  });
}
"""


class ExplorerPage:
    """The Explorer as a user sees it in one page: controls, counter, pictures, scrubber."""

    def __init__(self, page, root=None):
        self.page = page
        self.root = root if root is not None else page.locator(".nbd-explorer").first

    def wait_visible(self, timeout=180_000):
        self.root.wait_for(state="visible", timeout=timeout)
        return self

    def count_text(self) -> str:
        return self.root.locator(".nbd-count").text_content() or ""

    def wait_count(self, needle: str, timeout=180_000):
        self.root.locator(".nbd-count", has_text=needle).wait_for(timeout=timeout)

    def hold(self) -> int:
        """Press Pause, wait until the run is held, and return the steps it made."""
        self.click("Pause")
        self.wait_count("(paused)")
        return self.steps_done()

    def steps_done(self) -> int:
        import re

        match = re.search(r"step (\d+) / (\d+)", self.count_text())
        return int(match.group(1)) if match else 0

    def wait_steps(self, at_least: int, total: int, timeout=180_000):
        """Wait for a run of `total` steps to have done `at_least` (not the previous run's counter)."""
        self.page.wait_for_function(
            "([root, n, total]) => { const m = /step (\\d+) \\/ (\\d+)/.exec(root.querySelector('.nbd-count').textContent);"
            " return m && Number(m[1]) >= n && Number(m[2]) === total; }",
            arg=[self.root.element_handle(), at_least, total], timeout=timeout)

    def set_steps(self, steps: int):
        field = self.root.get_by_label("Steps", exact=True)
        field.fill(str(steps))
        field.press("Tab")  # "change" sends it to the kernel

    def set_guidance(self, value: float):
        self.root.locator("input[aria-label='Guidance']").evaluate(
            "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true}));"
            " el.dispatchEvent(new Event('change', {bubbles: true})); }", value)

    def click(self, name: str):
        self.root.get_by_role("button", name=name, exact=True).click()

    def what_if_at(self, step: int, guidance: float) -> None:
        """Scrub to `step` (1-based, from the first) and set the what-if guidance there; waits until the x0 frame
        shows it and the badge says so."""
        self.press_on_slider("Home")
        for _ in range(step - 1):
            self.press_on_slider("ArrowRight")
        assert self.position().startswith(f"{step} / ")
        self.page.wait_for_timeout(300)  # let the scrub's full-VAE frame land first (not an assertion)
        before = self.frame_hash()
        self.root.locator("input[aria-label='What-if guidance']").evaluate(
            "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true}));"
            " el.dispatchEvent(new Event('change', {bubbles: true})); }", guidance)
        self.wait_frame_change(before)
        self.root.locator(".nbd-badge", has_text=f"what if guidance {guidance:.1f}").wait_for()

    def watch_frames(self):
        self.root.evaluate(WATCH_JS)

    def frames_seen(self) -> int:
        return self.page.evaluate("() => window.__nbdSeen ? window.__nbdSeen.size : 0")

    def frame_hash(self) -> str:
        return self.root.evaluate(
            "(root) => { const c = root.querySelector('canvas[data-view=\"x0\"]');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let h = 2166136261; for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619);"
            " return `${c.width}x${c.height}:${h >>> 0}`; }")

    def pixels(self, view: str = "x0") -> np.ndarray:
        """The RGB pixels a view's canvas holds (its own resolution, before CSS upscales it)."""
        width, height, data = self.root.evaluate(
            "(root, view) => { const c = root.querySelector(`canvas[data-view=\"${view}\"]`);"
            " return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }",
            view)
        return np.asarray(data, np.uint8).reshape(height, width, 4)[..., :3]

    def wait_frame_change(self, old: str, timeout=30_000) -> str:
        """Frames decode asynchronously after a reload: wait for the picture to differ from `old`."""
        self.page.wait_for_function(
            "([root, old]) => { const c = root.querySelector('canvas[data-view=\"x0\"]');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " let h = 2166136261; for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619);"
            " return `${c.width}x${c.height}:${h >>> 0}` !== old; }", arg=[self.root.element_handle(), old],
            timeout=timeout)
        return self.frame_hash()

    def position(self) -> str:
        return self.root.locator(".nbd-at").text_content() or ""

    def guidance_segments(self) -> list:
        import json as _json

        return _json.loads(self.root.locator(".nbd-gstrip").get_attribute("data-guidances") or "[]")

    def drag_scrubber(self, start: float, end: float):
        slider = self.root.locator(".nbd-slider")
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        y = box["y"] + box["height"] / 2
        self.page.mouse.move(box["x"] + box["width"] * start, y)
        self.page.mouse.down()
        for i in range(1, 9):
            self.page.mouse.move(box["x"] + box["width"] * (start + (end - start) * i / 8), y)
        self.page.mouse.up()

    def press_on_slider(self, key: str):
        slider = self.root.locator(".nbd-slider")
        slider.focus()
        slider.press(key)

    def paint_latency(self, samples: int = 60) -> dict:
        if not self.page.evaluate("() => !!window.__nbdHash"):
            self.watch_frames()
        return self.page.evaluate(PAINT_JS, [self.root.element_handle(), samples])

    def drag_latency(self, moves: int = 60) -> dict:
        """Median time from a real mouse-drag input event on the scrubber to its frame painted."""
        self.root.evaluate(DRAG_WATCH_JS)
        slider = self.root.locator(".nbd-slider")
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        y = box["y"] + box["height"] / 2
        self.page.mouse.move(box["x"] + 2, y)
        self.page.mouse.down()
        for i in range(moves):
            phase = (i % 30) / 29 if (i // 30) % 2 == 0 else 1 - (i % 30) / 29
            self.page.mouse.move(box["x"] + 2 + (box["width"] - 4) * phase, y)
        self.page.mouse.up()
        self.page.wait_for_timeout(100)  # let the last frames' measurements land (not an assertion)
        times = sorted(self.page.evaluate("() => window.__nbdDrag"))
        return {"median_ms": round(times[len(times) // 2], 2), "max_ms": round(times[-1], 2), "events": len(times)}

    def smoke(self, steps: int, shots: pathlib.Path, prefix: str) -> None:
        """Generate, see the picture change while it runs, reach N / N, scrub by drag and keys."""
        self.set_steps(steps)
        self.watch_frames()
        self.click("Generate")
        self.wait_steps(3, steps)
        self.screenshot(shots / f"{prefix}_running.png")
        self.wait_count(f"step {steps} / {steps}")
        assert self.frames_seen() >= 3, "the shown pixels did not change during the run"
        self.wait_count("done")
        end = self.frame_hash()
        self.drag_scrubber(0.98, 0.05)
        self.wait_frame_change(end)
        self.press_on_slider("End")
        assert self.position() == f"{steps} / {steps}"
        self.press_on_slider("ArrowLeft")
        assert self.position() == f"{steps - 1} / {steps}"
        self.screenshot(shots / f"{prefix}_done.png")

    def screenshot(self, path):
        self.root.scroll_into_view_if_needed()
        self.root.screenshot(path=str(path))


@pytest.fixture
def explorer_page():
    return ExplorerPage


def record_metric(name: str, value) -> None:
    """Keep browser measurements (printed ratios, never asserted on time) in build/browser_metrics.json."""
    path = ROOT / "build" / "browser_metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2))
    print(f"{name}: {value}")


@pytest.fixture
def metric():
    return record_metric
