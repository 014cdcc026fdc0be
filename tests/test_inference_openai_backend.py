"""OpenAIBackend's request building and server description, without a server (the vLLM end to end tests are in
tests/test_vllm_serving.py): messages in both image layouts, harmony decoding fields, what a checkpoint folder
says about itself, and a refused connection ending in ServerUnavailable after the retries."""

import base64
import io
import socket

import pytest
from PIL import Image

from llava_medgpt.inference.models import split_image_markers
from llava_medgpt.inference.openai_backend import (
    OpenAIBackend,
    OpenAIServer,
    ServerUnavailable,
    describe_served_model,
    to_openai_messages,
)


def _image(colour) -> Image.Image:
    return Image.new("RGB", (5, 3), colour)


def _decoded(part) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "<image>\nFirst case?"},
    {"role": "assistant", "content": "B"},
    {"role": "user", "content": "<image>\n<image>\nCompare: which is larger?"},
]


def test_inline_keeps_the_text_and_appends_images_in_marker_order():
    red, green, blue = _image("red"), _image("green"), _image("blue")
    out = to_openai_messages(MESSAGES, [red, green, blue], "inline")
    assert out[0] == {"role": "system", "content": "Be brief."}
    assert out[2] == {"role": "assistant", "content": "B"}
    assert out[1]["content"][0] == {"type": "text", "text": "<image>\nFirst case?"}
    assert out[3]["content"][0] == {"type": "text", "text": "<image>\n<image>\nCompare: which is larger?"}
    colours = [[_decoded(p).getpixel((0, 0)) for p in m["content"][1:]] for m in (out[1], out[3])]
    assert colours == [[(255, 0, 0)], [(0, 128, 0), (0, 0, 255)]]  # lossless PNG, the harness's pixels


def test_parts_follow_the_hf_adapters_structured_content():
    images = [_image("red"), _image("green"), _image("blue")]
    out = to_openai_messages(MESSAGES, images, "parts")
    for message, original in zip(out[1::2], MESSAGES[1::2]):
        kinds = [{"type": "image"} if p["type"] == "image_url" else p for p in message["content"]]
        assert kinds == split_image_markers(original["content"])
    assert out[3]["content"][2] == {"type": "text", "text": "Compare: which is larger?"}
    with pytest.raises(ValueError, match="3 <image> markers but 2 images"):
        to_openai_messages(MESSAGES, images[:2], "parts")


def test_request_body_asks_for_harmony_decoding_only_for_harmony_models():
    plain = OpenAIBackend(OpenAIServer("http://127.0.0.1:1/v1", model="m"))
    body = plain.request_body(MESSAGES[:2], [_image("red")], 7)
    assert {k: body[k] for k in ("model", "max_tokens", "temperature", "n", "stream")} == {
        "model": "m", "max_tokens": 7, "temperature": 0.0, "n": 1, "stream": False}
    assert "skip_special_tokens" not in body and "chat_template_kwargs" not in body
    assert "return_token_ids" not in body  # no local tokenizer: the server's text is the output
    harmony = OpenAIBackend(OpenAIServer("http://127.0.0.1:1/v1", model="m", keep_special_tokens=True,
                                         template_kwargs={"reasoning_effort": "high"}))
    body = harmony.request_body(MESSAGES[:1], [], 7)
    assert body["skip_special_tokens"] is False and body["include_stop_str_in_output"] is True
    assert body["spaces_between_special_tokens"] is False
    assert body["chat_template_kwargs"] == {"reasoning_effort": "high"}
    with pytest.raises(ValueError, match="image_markers"):
        OpenAIServer("http://x/v1", model="m", image_markers="interleaved")


def test_with_the_local_tokenizer_the_output_is_decoded_like_hf(tiny_checkpoint):
    from llava_medgpt.inference.generate import decode_tokens
    from llava_medgpt.inference.openai_backend import load_local_tokenizer

    tokenizer = load_local_tokenizer(str(tiny_checkpoint("gpt_oss")))
    backend = OpenAIBackend(OpenAIServer("http://127.0.0.1:1/v1", model="m"), tokenizer=tokenizer)
    assert backend.request_body(MESSAGES[:1], [], 4)["return_token_ids"] is True
    final = tokenizer.encode("<|channel|>final<|message|>B<|return|>", add_special_tokens=False)
    # Harmony keeps special tokens, others drop them; trailing pads go.
    assert decode_tokens(tokenizer, final + [tokenizer.pad_token_id] * 2, True) == "<|channel|>final<|message|>B<|return|>"
    assert decode_tokens(tokenizer, final, False) == "finalB"
    assert load_local_tokenizer("some-org/not-in-the-cache") is None


def test_describe_served_model_reads_the_checkpoint(tiny_checkpoint):
    medgpt = describe_served_model(str(tiny_checkpoint("gpt_oss")))
    assert (medgpt.model_type, medgpt.multimodal, medgpt.harmony, medgpt.image_markers) == (
        "llava_medgpt", True, True, "inline")
    qwen = describe_served_model(str(tiny_checkpoint("qwen2")))
    assert (qwen.model_type, qwen.harmony) == ("llava_medgpt", False)
    remote = describe_served_model("some-org/not-in-the-cache")
    assert (remote.model_type, remote.multimodal, remote.harmony, remote.image_markers) == (
        "openai", True, False, "parts")


def test_a_refused_connection_is_retried_then_stops_the_run():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(OpenAIServer(f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, retry_wait=0.01))
    with pytest.raises(ServerUnavailable, match="failed 3 times.*rerun the same command to resume"):
        backend.generate([MESSAGES[:1]], [[]], 4)
    with pytest.raises(ServerUnavailable, match="did not answer /models"):
        backend.wait_until_ready(timeout=0.2, poll=0.05)
    backend.close()
