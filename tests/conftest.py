import os
import threading

import pytest
import torch

# Two contended threads on two slow cores were seen 2-10x slower than one.
torch.set_num_threads(int(os.environ.get("NBD_TEST_THREADS", "1")))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def sd_pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline()


@pytest.fixture(scope="session")
def sd_vpred_pipe():
    from nbdiffuse.testing import tiny_sd_pipeline

    return tiny_sd_pipeline(prediction_type="v_prediction", seed=1)


@pytest.fixture(scope="session")
def sdxl_pipe():
    from nbdiffuse.testing import tiny_sdxl_pipeline

    return tiny_sdxl_pipeline()


@pytest.fixture(scope="session")
def sd_controlnet_pipe():
    from nbdiffuse.testing import tiny_controlnet_pipeline

    return tiny_controlnet_pipeline()


@pytest.fixture(scope="session")
def sdxl_controlnet_pipe():
    from nbdiffuse.testing import tiny_controlnet_pipeline

    return tiny_controlnet_pipeline(xl=True)


@pytest.fixture(scope="session")
def sd_multi_controlnet_pipe():
    from nbdiffuse.testing import tiny_controlnet_pipeline

    return tiny_controlnet_pipeline(nets=2)


@pytest.fixture(scope="session")
def sdxl_multi_controlnet_pipe():
    from nbdiffuse.testing import tiny_controlnet_pipeline

    return tiny_controlnet_pipeline(xl=True, nets=2)


@pytest.fixture(scope="session")
def sd3_pipe():
    from nbdiffuse.testing import tiny_sd3_pipeline

    return tiny_sd3_pipeline()


@pytest.fixture(scope="session")
def flux_pipe():
    """Flux-dev-like: distilled guidance is a transformer input."""
    from nbdiffuse.testing import tiny_flux_pipeline

    return tiny_flux_pipeline()


@pytest.fixture(scope="session")
def flux_schnell_pipe():
    """Flux-schnell-like: no guidance input, so guidance > 1 is true CFG with the negative prompt."""
    from nbdiffuse.testing import tiny_flux_pipeline

    return tiny_flux_pipeline(seed=1, guidance_embeds=False)


@pytest.fixture(scope="session")
def pixart_pipe():
    from nbdiffuse.testing import tiny_pixart_pipeline

    return tiny_pixart_pipeline()


@pytest.fixture(scope="session")
def pixart_alpha_pipe():
    from nbdiffuse.testing import tiny_pixart_pipeline

    return tiny_pixart_pipeline(seed=1, sigma=False)


@pytest.fixture(scope="session")
def generic_pipe():
    """AltDiffusionPipeline: outside nbdiffuse's families, watched through callback_on_step_end (x_t, and x0 read
    from what its sampler is given)."""
    from nbdiffuse.testing import tiny_alt_diffusion_pipeline

    return tiny_alt_diffusion_pipeline()


@pytest.fixture(scope="session")
def xt_only_pipe():
    """StableDiffusionPanoramaPipeline on tiny_sd_pipeline's parts, DDIM: watched through callback_on_step_end. Run
    wider than its window of 64 latent pixels (16 x 160 pixels: 8 x 80 latents), it steps the picture window by window,
    so no sampler call sees the whole x_t and its runs record x_t alone (core/sampler_tap.py)."""
    import warnings

    from diffusers import DDIMScheduler, StableDiffusionPanoramaPipeline

    from nbdiffuse.testing import tiny_sd_pipeline

    parts = tiny_sd_pipeline().components
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionPanoramaPipeline(**{**parts, "safety_checker": None}, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(parts["scheduler"].config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def pag_pipe():
    """StableDiffusionPAGPipeline: the SD family's loop with perturbed-attention guidance (core/pag.py)."""
    from nbdiffuse.testing import tiny_pag_pipeline

    return tiny_pag_pipeline()


class ModelCalls:
    """Counts forward calls of a module through a real forward hook."""

    def __init__(self, module):
        self.count = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, *args):
        self.count += 1

    def close(self):
        self._handle.remove()


class OverlapWatch:
    """`with OverlapWatch(module) as watch:` records in `watch.overlaps` the thread of any forward
    call that began while another was still running: two runs racing on one model. `on_enter()`
    runs at each call's start (under the watch's lock)."""

    def __init__(self, module, on_enter=None):
        self.module, self.on_enter = module, on_enter
        self.overlaps: list[str] = []
        self._active = 0
        self._lock = threading.Lock()
        self._handles = []

    def _enter(self, module, args):
        with self._lock:
            if self._active:
                self.overlaps.append(threading.current_thread().name)
            self._active += 1
            if self.on_enter is not None:
                self.on_enter()

    def _leave(self, module, args, output):
        with self._lock:
            self._active -= 1

    def __enter__(self):
        self._handles = [self.module.register_forward_pre_hook(self._enter),
                         self.module.register_forward_hook(self._leave)]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


@pytest.fixture
def overlap_watch():
    """OverlapWatch, for `with overlap_watch(pipe.unet) as watch: ...; assert not watch.overlaps`."""
    return OverlapWatch


@pytest.fixture
def model_calls():
    """model_calls(module) -> a counter of that module's forward calls, removed after the test."""
    made = []

    def attach(module):
        counter = ModelCalls(module)
        made.append(counter)
        return counter

    yield attach
    for counter in made:
        counter.close()


@pytest.fixture
def open_explorer():
    """open_explorer(pipe, ignore_threads=(), **defaults) -> (Explorer, HeadlessFrontend) that acks
    like explorer.js; all closed afterwards, and no thread of theirs may be left (names in
    ignore_threads aside)."""
    from polling import new_threads

    from nbdiffuse.widgets import Explorer
    from nbdiffuse.widgets.headless import HeadlessFrontend

    before = set(threading.enumerate())
    made, ignore = [], set()

    def make(pipe, ignore_threads=(), **defaults):
        ignore.update(ignore_threads)
        ex = Explorer(pipe, **defaults)
        fe = HeadlessFrontend(ex)
        made.append((ex, fe))
        return ex, fe

    yield make
    for ex, fe in made:
        ex.close()
        fe.close()
    left = new_threads(before, ignore)
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def unet_calls(model_calls):
    """unet_calls(pipe) -> a counter of that pipeline's UNet calls."""
    return lambda pipe: model_calls(pipe.unet)


@pytest.fixture
def run_notebook(tmp_path, monkeypatch):
    """Execute examples/NAME.ipynb top to bottom in a real kernel, offline; return its outputs.

    Returns (notebook, text of all outputs, widget-view outputs, seconds taken).
    """
    import pathlib
    import time

    import nbformat
    from nbclient import NotebookClient

    root = pathlib.Path(__file__).resolve().parents[1]

    def run(name: str, cell_timeout: int = 300):
        notebook = nbformat.read(root / "examples" / f"{name}.ipynb", as_version=4)
        assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
            f"{name}.ipynb must be saved without outputs"
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        client = NotebookClient(notebook, timeout=cell_timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}})
        began = time.monotonic()
        client.execute()
        outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
        errors = [o for o in outputs if o.output_type == "error"]
        assert not errors, f"{name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        text = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
        views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        return notebook, text, views, time.monotonic() - began

    return run
