"""Every diffusers pipeline class whose __call__ takes callback_on_step_end, and what nbdiffuse does with it.

Each class is one of: "covered" (a family nbdiffuse drives: every view, what-if, branching), "x0 and x_t"
(its own loop, watched through the step callback, x0 read from what its sampler is given: no what-if, no
branching) or "x_t only" (watched, and its sampler's prediction has no x0 formula), all built and run by the
matrix (cases.py); or
"refused" (REFUSED: not a text-to-image or image-to-image picture pipeline, with the reason); or
"not built" (NOT_BUILT: a picture pipeline the matrix has no tiny builder for, with what stands in the
way). test_zoo_table.py fails when a class is in none of them, so the table stays complete as diffusers grows.

`python tests/pipeline_zoo/zoo_table.py` prints the README's table; `--write` puts it into README.md.
"""
from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASES  # noqa: E402

START, END = "<!-- pipeline-table -->", "<!-- /pipeline-table -->"
README = Path(__file__).resolve().parents[2] / "README.md"

# (pattern on the class name, reason): the first that matches refuses the class.
REFUSED = [
    (r"^(AceStep|StableAudio|LongCatAudio)", "audio, not pictures"),
    (r"^(LLaDA2|DiffusionGemma)", "text generation, not pictures"),
    (r"^RFD4Proteina", "protein structures, not pictures"),
    (r"Video|Animate|^Wan|^LTX|^Mochi|^Allegro|^Latte|^Cosmos(?!2TextToImage)|^SkyReels|^Helios|^EasyAnimate"
     r"|^Kandinsky5[TI]2V|^Kandinsky6|^SanaWM|^ChronoEdit|^AnyFlow|^PIA|^LucyEdit|^Motif",
     "video: a run's latents are frames (5-D), nbdiffuse traces pictures"),
    (r"Edit|Kontext|Layered|VisualCloze|OmniGen|InstructPix2Pix|Depth2Img|^ZImageOmni|^Kandinsky5I2I",
     "editing: reference pictures or depth as conditions, not a start picture"),
    (r"^(StableCascade|Wuerstchen)", "a stage of a cascade: the prior makes image embeddings, the decoder "
     "needs them (E2: a decoder under another name is read where a run has one)"),
    (r"^StableDiffusionLDM3D", "pictures with depth; its __call__ refuses output_type='latent', which a watched run "
     "needs (the run would fail after its last step)"),
    (r"^KandinskyV22", "Kandinsky 2.2: its denoiser takes image embeddings from a prior, not a prompt"),
    (r"^HunyuanImageRefiner", "a refiner: its picture is a condition (noised a fixed 25% and joined to the latents), "
     "not a start picture; its __call__ needs the picture and takes no strength"),
]


# Picture pipelines the matrix has no tiny builder for (each is a text-to-image or image-to-image class): class ->
# what stands in the way ("a picture pipeline the matrix has no tiny builder for yet" where no one has looked).
NOT_BUILT: dict[str, str] = {
    "ChromaInpaintPipeline": "diffusers' ChromaInpaintPipeline reads transformer.config.guidance_embeds, which "
                             "ChromaTransformer2DModel's config does not have: pipe(...) itself fails (AttributeError)",
    "StableDiffusion3ControlNetInpaintingPipeline": "inpainting through its ControlNet: the picture and its mask go "
                                                    "in as control_image and control_mask (pipe_kwargs), with no "
                                                    "start picture; no tiny builder for it yet",
    "QwenImageControlNetInpaintPipeline": "inpainting through its ControlNet: the picture and its mask go in as "
                                          "control_image and control_mask (pipe_kwargs), with no start picture; no "
                                          "tiny builder for it yet",
    "ZImageControlNetInpaintPipeline": "its __call__ takes image and mask_image but no strength, which trace's "
                                       "image=... goes with; no tiny builder for it yet",
}
# (pattern on the class name, what stands in the way) for whole groups of such classes
NOT_BUILT_PATTERNS = [
    (r"Control", "a ControlNet pipeline: trace(control_image=...) hands its picture and settings to pipe(...) "
     "(core/generic_control.py), as for the ControlNet classes the matrix builds; no tiny builder for this one yet"),
]
STATUSES = ("covered", "x0 and x_t", "x_t only", "refused", "not built")
UNLISTED = "unlisted"  # a class in no list: test_zoo_table fails until it is built, refused or listed


def callback_pipelines() -> list[str]:
    """Names of the diffusers pipeline classes whose __call__ takes callback_on_step_end."""
    import diffusers

    found = []
    for name in dir(diffusers):
        if not name.endswith("Pipeline"):
            continue
        try:
            cls = getattr(diffusers, name)
            params = inspect.signature(cls.__call__).parameters
        except Exception:  # an optional dependency missing, or no signature
            continue
        if isinstance(cls, type) and "callback_on_step_end" in params:
            found.append(name)
    return sorted(found)


def refusal(name: str) -> str | None:
    for pattern, reason in REFUSED:
        if re.search(pattern, name):
            return reason
    return None


def rows() -> list[tuple[str, str, str]]:
    """(class, status, note) for every class of callback_pipelines()."""
    built = {case.cls: case for case in CASES}
    out = []
    for name in callback_pipelines():
        case = built.get(name)
        if case is not None:
            xfail = sorted({reason.split(":")[0] for reason in case.xfail.values()})
            kind = "inpainting; " if case.mask else "image to image; " if case.image else ""
            note = kind + ("control_image; " if case.control else "") + (
                f"fails today: {', '.join(xfail)}" if xfail else "parity, views, files, Explorer")
            out.append((name, case.status, note))
        elif refusal(name) is not None:
            out.append((name, "refused", refusal(name)))
        elif name in NOT_BUILT:
            out.append((name, "not built", NOT_BUILT[name]))
        elif any(re.search(pattern, name) for pattern, _ in NOT_BUILT_PATTERNS):
            out.append((name, "not built", next(why for pattern, why in NOT_BUILT_PATTERNS if re.search(pattern, name))))
        else:
            out.append((name, UNLISTED, "in no list of tests/pipeline_zoo: build it, refuse it or list it"))
    return out


def markdown() -> str:
    table = rows()
    counts = {status: sum(1 for _, s, _ in table if s == status)
              for status in STATUSES}
    head = (f"{len(table)} pipeline classes of diffusers take `callback_on_step_end`: "
            + ", ".join(f"{n} {status}" for status, n in counts.items()) + ".\n\n")
    lines = ["| pipeline | status | note |", "|---|---|---|"]
    lines += [f"| {name} | {status} | {note} |" for name, status, note in table]
    return head + "\n".join(lines) + "\n"


def readme_block(text: str) -> str | None:
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


if __name__ == "__main__":
    block = markdown()
    if "--write" in sys.argv:
        text = README.read_text(encoding="utf-8")
        if readme_block(text) is None:
            raise SystemExit(f"README.md has no {START} ... {END} block")
        before, rest = text.split(START, 1)
        README.write_text(before + START + "\n" + block + END + rest.split(END, 1)[1], encoding="utf-8")
    else:
        print(block)
