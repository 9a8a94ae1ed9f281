"""nbdiffuse.widgets.frames: encoding budgets and the pacing that keeps Jupyter under its message limit."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

import nbdiffuse as nbd
import nbdiffuse.widgets.frames as frames_module
from nbdiffuse.widgets.pacer import Pacer
from nbdiffuse.widgets.frames import (LIVE_MAX_BYTES, LOSSLESS_TYPE, RAW_MAGIC, RAW_TYPE, FrameStream, decode_frame,
                                      encode_frame, encode_live, encode_lossless, full_frames, mime_type, step_frames)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def sent_log():
    log = []
    return log, lambda content, buffers: log.append((content, buffers))


def test_live_frame_of_512_noise_fits_the_budget():
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)  # worst case for a codec
    data = encode_live(noise)
    assert len(data) <= LIVE_MAX_BYTES
    assert mime_type(data) == "image/jpeg"
    assert Image.open(io.BytesIO(data)).mode == "RGB"


def test_lossless_frame_round_trips_exactly():
    rng = np.random.default_rng(1)
    smooth = np.clip(np.cumsum(rng.normal(0, 3, (67, 45, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    for rgb in (rng.integers(0, 256, (16, 24, 3), dtype=np.uint8), smooth, np.zeros((1, 1, 3), np.uint8)):
        data = encode_lossless(rgb)
        assert mime_type(data) == LOSSLESS_TYPE == "image/webp"  # Pillow's wheels have WebP
        assert np.array_equal(decode_frame(data), rgb)
    wide = rng.integers(0, 256, (1, 16384, 3), dtype=np.uint8)  # over WebP's 16383 px: PNG
    data = encode_lossless(Image.fromarray(wide))
    assert mime_type(data) == "image/png" and np.array_equal(decode_frame(data), wide)


def test_frames_are_standard_image_bytes_lossless_up_to_64x64():
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    assert mime_type(encode_frame(small)) == LOSSLESS_TYPE and np.array_equal(decode_frame(encode_frame(small)), small)
    edge = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # the embedded model's pictures
    assert mime_type(encode_frame(edge)) == LOSSLESS_TYPE and np.array_equal(decode_frame(encode_frame(edge)), edge)
    large = np.zeros((65, 64, 3), np.uint8)
    assert mime_type(encode_frame(large)) == "image/jpeg" and decode_frame(encode_frame(large)).shape == (65, 64, 3)


def test_raw_frames_of_older_notebooks_still_decode():
    small = np.random.default_rng(2).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    data = RAW_MAGIC + (24).to_bytes(2, "little") + (16).to_bytes(2, "little") + small.tobytes()
    assert mime_type(data) == RAW_TYPE and np.array_equal(decode_frame(data), small)
    with pytest.raises(ValueError, match="does not hold 24 x 16 RGB pixels"):
        decode_frame(data[:-1])


def test_bad_frames_are_named():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        encode_live(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="PNG, WebP, JPEG or raw frame"):
        mime_type(b"GIF89a....")


def msg(k, buffers=()):
    return lambda: ({"k": k}, list(buffers))


def test_pacer_keeps_two_in_flight_and_the_newest_waiting():
    log, send = sent_log()
    built = []
    pacer = Pacer(send, max_in_flight=2, ack_timeout=10, min_interval=0, clock=Clock())
    for k in range(5):
        pacer.offer(lambda k=k: (built.append(k), ({"k": k}, [b"x"]))[1])
    assert [c["k"] for c, _ in log] == [0, 1]  # two in flight; 2 and 3 were replaced by 4
    assert pacer.waiting and pacer.replaced == 2
    pacer.ack(log[0][0]["seq"])
    assert [c["k"] for c, _ in log] == [0, 1, 4]
    assert built == [0, 1, 4]  # replaced messages were never built (frames never encoded)
    pacer.ack(12345)  # unknown or repeated acks (a second view) change nothing
    pacer.ack(log[0][0]["seq"])
    assert pacer.in_flight == 2 and not pacer.waiting


def test_pacer_counts_unacknowledged_frames_as_lost_after_the_timeout():
    log, send = sent_log()
    clock = Clock()
    pacer = Pacer(send, max_in_flight=2, ack_timeout=0.5, min_interval=0, clock=clock)
    for k in range(3):
        pacer.offer(msg(k))
    assert len(log) == 2
    clock.now = 0.6
    pacer.pump()
    assert [c["k"] for c, _ in log] == [0, 1, 2] and pacer.expired == 2


def test_pacer_caps_the_rate():
    log, send = sent_log()
    clock = Clock()
    pacer = Pacer(send, max_in_flight=2, min_interval=0.1, clock=clock)
    for step in range(10):  # 100 steps/s offered, acks come at once
        clock.now = step * 0.01
        pacer.offer(msg(step))
        if log:
            pacer.ack(log[-1][0]["seq"])
    assert [c["k"] for c, _ in log] == [0]
    clock.now = 0.1
    pacer.pump()
    assert [c["k"] for c, _ in log] == [0, 9]  # the newest, once the interval has passed


def test_pacer_sends_nothing_after_close():
    log, send = sent_log()
    pacer = Pacer(send, max_in_flight=1, min_interval=0, clock=Clock())
    pacer.offer(msg(0))
    pacer.offer(msg(1))
    pacer.close()
    pacer.ack(log[0][0]["seq"])
    pacer.offer(msg(2))
    assert [c["k"] for c, _ in log] == [0]


@pytest.mark.parametrize("arg, value", [("max_in_flight", 0), ("ack_timeout", 0), ("min_interval", -1)])
def test_pacer_rejects_bad_settings(arg, value):
    with pytest.raises(ValueError, match=arg):
        Pacer(lambda c, b: None, **{arg: value})


def test_frame_stream_offers_steps_and_keeps_every_frame(pipe):
    log, send = sent_log()
    pacer = Pacer(send, max_in_flight=1, ack_timeout=30, min_interval=0)
    streams = []

    def on_step(traj, step):
        if not streams:
            streams.append(FrameStream(traj, pacer, lambda k: {"k": k}))
        streams[0].push(step.index)

    traj = nbd.trace(pipe, "a red circle", steps=6, on_step=on_step)
    assert [c["k"] for c, _ in log] == [0] and len(log[0][1]) == 2  # one in flight, never acked; two views
    x0, xt = streams[0].snapshot()
    assert len(x0) == len(xt) == 6
    # one decoder draws the run: the frame sent live is the frame kept, the rest are made alike
    assert log[0][0]["decoder"] == streams[0].decoder and log[0][1] == [x0[0], xt[0]]
    assert x0 == [step_frames(traj, k, decoder=streams[0].decoder)[0] for k in range(6)]
    assert streams[0].snapshot(3)[1] == xt[:3]


def test_a_frame_stream_with_a_worker_makes_frames_beside_the_run_and_keeps_them(pipe):
    log, send = sent_log()
    pacer = Pacer(send, max_in_flight=8, ack_timeout=30, min_interval=0)
    streams, pushers = [], []

    def on_step(traj, step):
        if not streams:
            streams.append(FrameStream(traj, pacer, lambda k: {"k": k}, worker=True))
        pushers.append(threading.current_thread().name)
        streams[0].push(step.index)

    traj = nbd.trace(pipe, "a red circle", steps=6, on_step=on_step)
    stream = streams[0]
    for _ in range(200):  # the worker catches up with the last push
        if log and log[-1][0]["k"] == 5:
            break
        time.sleep(0.01)
    stream.close()
    stream._thread.join(5)
    assert not stream._thread.is_alive()
    sent = [content["k"] for content, _ in log]
    assert sent and sent[-1] == 5 and sent == sorted(set(sent))  # newest wins, never an older one after it
    x0, xt = stream.snapshot()
    assert len(x0) == len(xt) == 6
    for content, buffers in log:  # what went out live is what is kept
        assert buffers == [x0[content["k"]], xt[content["k"]]] and content["decoder"] == stream.decoder
    assert x0 == [step_frames(traj, k, decoder=stream.decoder)[0] for k in range(6)]


def test_a_frame_streams_worker_makes_only_paced_live_frames_and_the_snapshot_the_rest_once(pipe, monkeypatch):
    traj = nbd.trace(pipe, "a red circle", steps=6)
    made = []
    real = frames_module.steps_frames

    def counted(traj, ks, *args, **kwargs):
        made.extend(ks)
        return real(traj, ks, *args, **kwargs)
    monkeypatch.setattr(frames_module, "steps_frames", counted)
    log, send = sent_log()
    # an interval far longer than the test: after the first frame the worker makes no other live
    stream = FrameStream(traj, Pacer(send, max_in_flight=8, ack_timeout=30, min_interval=60), lambda k: {"k": k},
                         worker=True)
    stream.push(0)
    for _ in range(500):
        with stream._lock:
            if 0 in stream._frames and not stream._busy:
                break
        time.sleep(0.01)
    for k in range(1, 6):
        stream.push(k)
    time.sleep(0.3)
    with stream._lock:
        assert sorted(stream._frames) == [0], "within one interval the worker makes no second frame"
    assert [c["k"] for c, _ in log] == [0]
    stream.close()
    stream._thread.join(5)
    x0, xt = stream.snapshot()
    assert sorted(made) == list(range(6)), f"each step made once, got {sorted(made)}"
    assert x0 == [step_frames(traj, k, decoder=stream.decoder)[0] for k in range(6)]


def test_full_frames_are_png_at_output_size(pipe):
    traj = nbd.trace(pipe, "a red circle", steps=3)
    png_x0, png_xt = full_frames(traj, 2)
    assert Image.open(io.BytesIO(png_x0)).size == (traj.params["width"], traj.params["height"])
    assert mime_type(png_xt) == LOSSLESS_TYPE
    early_x0, early_xt = full_frames(traj, 0)
    assert early_x0 != early_xt  # mid-run, x_t is noisy: a decode of its own


def test_final_step_decodes_once_when_x0_and_xt_agree(pipe):
    from nbdiffuse.widgets.frames import same_latents

    traj = nbd.trace(pipe, "a red circle", steps=3, scheduler="euler")
    x0, xt = traj.latents_for(-1, "x0"), traj.latents_for(-1, "xt")
    assert same_latents(x0, xt)  # Euler ends at sigma 0: the two differ by rounding only
    calls = []
    decode = pipe.vae.decode
    pipe.vae.decode = lambda *a, **k: calls.append(1) or decode(*a, **k)
    try:
        png_x0, png_xt = full_frames(traj, 2)
    finally:
        del pipe.vae.decode
    assert png_x0 == png_xt and len(calls) == 1
    assert not same_latents(x0, x0 + 1e-2) and not same_latents(x0, x0[:1])


def test_final_latents_agree_within_the_rounding_of_their_dtype():
    """On a GPU, x0 is worked out in fp16 and differs from the final x_t by a few fp16 units: one
    decode must serve both (a second costs 70 ms of a 1.2 s SD 1.5 run on an H100)."""
    from nbdiffuse.widgets.frames import same_latents

    torch.manual_seed(0)
    z = torch.randn(4, 64, 64) * 4
    wobble = 1 + 2e-3 * torch.sign(torch.randn(4, 64, 64))  # about two fp16 units, relative
    assert same_latents((z * wobble).half(), z.half())
    assert not same_latents(z * wobble, z)  # in fp32 the same gap is a real difference
    assert not same_latents((z + 0.1).half(), z.half())  # LMS / DEIS: ~0.1 apart, decoded separately


def small_tiny_autoencoder():
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                           num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4,
                           upsampling_scaling_factor=2)


def frame_sizes(frontend):
    return {decode_frame(b).shape[1::-1] for content, buffers in frontend.customs
            if content.get("type") == "frame" for b in buffers if b}


def test_tiny_autoencoder_draws_live_and_kept_frames_at_output_size(pipe, open_explorer):
    """preview: with a tiny autoencoder set, the frames sent live and the frames kept for the
    scrubber are its decodes at the output size (auto picks it); "approx" opts out."""
    output = (16, 16)  # the tiny test pipeline: 8x8 latents, 16x16 pictures
    nbd.set_tiny_decoder(pipe, small_tiny_autoencoder())
    try:
        ex, fe = open_explorer(pipe, steps=5)
        assert ex.preview == "auto"
        ex.generate(prompt="a red circle", seed=1)
        assert ex.wait(60) and ex.status == "done", ex.error
        assert frame_sizes(fe) == {output}
        assert {c["decoder"] for c, _ in fe.customs if c.get("type") == "frame"} == {"tiny"}
        kept = {decode_frame(b).shape[1::-1] for b in fe.state["frames_x0"] + fe.state["frames_xt"]}
        assert kept == {output} and len(fe.state["frames_x0"]) == 5 and fe.state["frames_decoder"] == "tiny"
        # kept as encode_tiny writes them: JPEG of the tiny decoder's picture, off by JPEG's rounding only
        # (this random-weight decoder draws noise, JPEG's worst case: 4.6 of 255 here)
        kept_frame, tiny = fe.state["frames_x0"][2], np.asarray(ex.trajectory.image(2, decoder="tiny"), float)
        assert mime_type(kept_frame) == "image/jpeg" and np.abs(decode_frame(kept_frame) - tiny).mean() < 8

        ex2, fe2 = open_explorer(pipe, steps=5, preview="approx")
        ex2.generate(prompt="a red circle", seed=1)
        assert ex2.wait(60) and ex2.status == "done", ex2.error
        assert frame_sizes(fe2) == {(8, 8)} and fe2.state["frames_decoder"] == "approx"
        kept = {decode_frame(b).shape[1::-1] for b in fe2.state["frames_x0"] + fe2.state["frames_xt"]}
        assert kept == {(8, 8)}
    finally:
        nbd.set_tiny_decoder(pipe, None)


def test_tiny_preview_without_a_tiny_autoencoder_is_refused_by_name(pipe, open_explorer):
    with pytest.raises(ValueError, match="preview must be one of 'auto', 'approx', 'tiny'"):
        open_explorer(pipe, preview="taesd")
    ex, fe = open_explorer(pipe, steps=3, preview="tiny")
    with pytest.raises(ValueError, match="preview='tiny' needs a tiny decoder"):
        ex.generate(prompt="a red circle")
    with pytest.raises(ValueError, match="preview must be one of"):
        ex.preview = "fast"
    assert ex.preview == "tiny"
    ex.preview = "auto"  # no tiny autoencoder: approx frames, and the run works
    ex.generate(prompt="a red circle")
    assert ex.wait(60) and ex.status == "done" and frame_sizes(fe) == {(8, 8)}
