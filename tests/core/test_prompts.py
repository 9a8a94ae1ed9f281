import pytest

import nbdiffuse as nbd
from nbdiffuse.core import prepare


def test_long_prompt_is_truncated_with_a_notice(sd_pipe):
    prompt = "red circle " * 20  # 220 characters, one token each in the tiny tokenizer
    traj = nbd.trace(sd_pipe, prompt, steps=2)
    assert len(traj) == 2
    assert any("truncated" in n and "reads 77" in n for n in traj.notices)
    assert not nbd.trace(sd_pipe, "red circle", steps=1).notices


def test_shapes_models_drop_and_report_unknown_words(sd_pipe, monkeypatch):
    monkeypatch.setattr(sd_pipe, "_nbd_shapes", True, raising=False)
    traj = nbd.trace(sd_pipe, "a big red dragon circle please", steps=1)
    assert traj.params["encoded_prompt"] == "big red circle"
    assert traj.notices == ["prompt: unknown words ignored: dragon, please (see nbd.shapes.VOCABULARY)"]
    with pytest.raises(ValueError, match="prompt 'white circle, white background'"):
        nbd.trace(sd_pipe, "white circle, white background", steps=1)


def test_truncation_notices_name_the_encoder_that_cuts(flux_pipe, pixart_pipe):
    # Flux reads the prompt twice: CLIP (77 tokens, pooled) and T5 (512); PixArt-Sigma's T5 reads 300.
    long = "a red circle " * 40  # 520 characters; the test tokenizers read one token per character
    flux = prepare(flux_pipe, long, steps=2, height=32, width=32)
    assert any("CLIP (pooled) reads 77" in n for n in flux.notices)
    pixart = prepare(pixart_pipe, long, steps=2)
    assert any("T5 reads 300" in n and "truncated" in n for n in pixart.notices)
    short = prepare(pixart_pipe, "a red circle", steps=2)
    assert short.notices == []


def test_tokenizer_calls_from_two_threads_never_interleave(sd_pipe):
    # Fast tokenizers keep padding/truncation settings on the shared object: prompt checks (the
    # kernel's thread) and encodings (a run's thread) take turns on one lock.
    import threading

    from nbdiffuse.core import encode_cache
    from nbdiffuse.core.locks import TOKENIZER_LOCK

    encode_cache.clear(sd_pipe)
    done = threading.Event()
    long = "a red circle " * 40

    def check():
        prepare(sd_pipe, long, steps=2)
        done.set()

    with TOKENIZER_LOCK:
        worker = threading.Thread(target=check, daemon=True)
        worker.start()
        assert not done.wait(0.5)  # waits for the lock: a run's encoding holds it
    assert done.wait(30)
    encoded = []
    original = sd_pipe.encode_prompt

    def watching(*args, **kwargs):
        encoded.append(TOKENIZER_LOCK._is_owned())
        return original(*args, **kwargs)

    sd_pipe.encode_prompt = watching
    try:
        nbd.trace(sd_pipe, "a blue square", steps=1)
    finally:
        del sd_pipe.encode_prompt
    assert encoded == [True]
