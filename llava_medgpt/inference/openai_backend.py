"""A `GenerationBackend` that asks an OpenAI-compatible server (vLLM, SGLang, TGI, ...) for chat completions.

    backend = OpenAIBackend(OpenAIServer("http://127.0.0.1:8000/v1", model="outputs/stage2"))
    backend.wait_until_ready()
    outputs = backend.generate([[{"role": "user", "content": "<image>\\nWhat is shown?"}]], [[image]], 64)

The server renders each conversation with the model's own chat template (MedGPT-oss: the checkpoint's
chat_template.jinja; baselines: their official templates) and decodes greedily (temperature 0). The conversations
of one call are sent concurrently, `concurrency` at a time, and come back in order, so the harness's prediction
files, resume and scoring are the same as with HFBackend.

Images travel as lossless PNG data URLs of the decoded images the harness built (a DICOM is already pixels).
Where they go in the prompt (`image_markers`):
    "inline"  the message text keeps its "<image>" markers and the images follow as parts; vLLM leaves markers
              the prompt already has in place, so a model whose placeholder is "<image>" (MedGPT-oss via our
              plugin) sees exactly the harness's text.
    "parts"   each marker becomes an image part in order (the OpenAI convention), for models whose template
              places its own image tokens (Gemma 3, Qwen2.5-VL, LLaVA-OneVision).

Decoding: when the harness has the checkpoint's tokenizer (a local folder or the local hub cache), it asks vLLM for
the generated token ids (`return_token_ids`) and decodes them with HFBackend's own rule, so the text is the same
byte for byte (a server's incremental detokenizer, e.g., holds back a multi-byte character cut by max_tokens).
Without a tokenizer, or from a server that returns no ids, the server's text is used; for harmony models (GPT-oss
chat format) the request then asks vLLM to keep special tokens and the stop token, as HFBackend does.

Only the standard library is used for HTTP. Connection failures and 5xx answers are retried with backoff
(`max_retries`); after that `ServerUnavailable` stops the run, whose finished batches are already on disk.
"""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..constants import HARMONY_CHANNEL, IMAGE_MARKER

IMAGE_MARKER_MODES = ("inline", "parts")


class ServerUnavailable(RuntimeError):
    """The server could not be reached (or kept failing) after all retries."""


class RequestRejected(RuntimeError):
    """The server answered a request with a 4xx error (e.g. a prompt longer than its max_model_len)."""


@dataclass(frozen=True)
class OpenAIServer:
    """Where and how to ask. `model` is the name the server serves (vLLM: the path or --served-model-name)."""

    base_url: str
    model: str
    api_key: str | None = None
    concurrency: int = 8
    image_markers: str = "parts"
    keep_special_tokens: bool = False  # harmony models: decode like HFBackend (special tokens kept)
    template_kwargs: dict = field(default_factory=dict)  # sent as chat_template_kwargs
    request_timeout: float = 600.0
    max_retries: int = 5
    retry_wait: float = 2.0  # first backoff in seconds, doubled after each failure

    def __post_init__(self):
        if self.image_markers not in IMAGE_MARKER_MODES:
            raise ValueError(f"image_markers must be one of {IMAGE_MARKER_MODES}, got {self.image_markers!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


@dataclass(frozen=True)
class ServedModel:
    """What the harness needs to know about a served model without loading it."""

    model_type: str
    multimodal: bool
    harmony: bool

    @property
    def image_markers(self) -> str:
        return "inline" if self.model_type == "llava_medgpt" else "parts"


def _local_file(model: str, name: str) -> Path | None:
    """`name` of a checkpoint folder, or of a hub id already in the local hub cache (never downloads)."""
    if Path(model).is_dir():
        path = Path(model) / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, name)
    except ValueError:  # not a repo id
        return None
    return Path(cached) if isinstance(cached, str) else None


def describe_served_model(model: str) -> ServedModel:
    """From the checkpoint's config.json and tokenizer files (a local folder, or a hub id in the local cache):
    model_type, vision, harmony.

    A model the harness cannot see locally is taken as a multimodal, non-harmony model of type "openai"; the
    server rejects what it cannot do.
    """
    config_path = _local_file(model, "config.json")
    if config_path is None:
        return ServedModel(model_type="openai", multimodal=True, harmony=False)
    from .models import ADAPTERS

    config = json.loads(config_path.read_text(encoding="utf-8"))
    model_type = config.get("model_type", "openai")
    tokenizer_files = [_local_file(model, name) for name in ("tokenizer.json", "tokenizer_config.json")]
    harmony = any(HARMONY_CHANNEL in path.read_text(encoding="utf-8") for path in tokenizer_files if path)
    return ServedModel(model_type=model_type, multimodal=model_type in ADAPTERS, harmony=harmony)


def image_data_url(image: Image.Image) -> str:
    """Lossless PNG data URL; low compression, as the bytes only cross a local or cluster network."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_part(image: Image.Image) -> dict:
    return {"type": "image_url", "image_url": {"url": image_data_url(image)}}


def to_openai_messages(messages: list[dict], images: list[Image.Image], image_markers: str) -> list[dict]:
    """Harness messages ("<image>" markers in string content) + their images in marker order -> OpenAI messages."""
    markers = sum(message["content"].count(IMAGE_MARKER) for message in messages)
    if markers != len(images):
        raise ValueError(f"the conversation has {markers} {IMAGE_MARKER} markers but {len(images)} images")
    out, cursor = [], 0
    for message in messages:
        content = message["content"]
        count = content.count(IMAGE_MARKER)
        own = images[cursor:cursor + count]
        cursor += count
        if count == 0:
            out.append({"role": message["role"], "content": content})
        elif image_markers == "inline":
            out.append({"role": message["role"],
                        "content": [{"type": "text", "text": content}] + [_image_part(im) for im in own]})
        else:
            parts, pieces = [], content.split(IMAGE_MARKER)
            for n, text in enumerate(pieces):
                if n > 0:
                    parts.append(_image_part(own[n - 1]))
                text = text.strip("\n") if n > 0 else text
                if text:
                    parts.append({"type": "text", "text": text})
            out.append({"role": message["role"], "content": parts})
    return out


def load_local_tokenizer(model: str):
    """The checkpoint's tokenizer from a local folder or the local hub cache (never downloads), with the padding
    token HFBackend's models get (load_chat_model); None when it is not on this machine."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError):
        return None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class OpenAIBackend:
    """Greedy chat completions from an OpenAI-compatible server; one request per conversation, sent concurrently.

    tokenizer: the served checkpoint's tokenizer, to decode the returned token ids like HFBackend (optional).
    """

    def __init__(self, server: OpenAIServer, tokenizer=None):
        self.server = server
        self.tokenizer = tokenizer
        self.base_url = server.base_url.rstrip("/")
        self._pool = ThreadPoolExecutor(max_workers=server.concurrency, thread_name_prefix="openai-backend")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def request_body(self, messages: list[dict], images: list[Image.Image], max_new_tokens: int) -> dict:
        server = self.server
        body = {"model": server.model, "messages": to_openai_messages(messages, images, server.image_markers),
                "max_tokens": max_new_tokens, "temperature": 0.0, "top_p": 1.0, "n": 1, "stream": False}
        if self.tokenizer is not None:
            body["return_token_ids"] = True  # vLLM extension; decoded locally (module docstring)
        if server.keep_special_tokens:
            # vLLM sampling extensions, for the server's own text: decode the way HFBackend does for harmony models.
            body.update(skip_special_tokens=False, spaces_between_special_tokens=False,
                        include_stop_str_in_output=True)
        if server.template_kwargs:
            body["chat_template_kwargs"] = dict(server.template_kwargs)
        return body

    def generate(self, conversations: list[list[dict]], images: list[list[Image.Image]],
                 max_new_tokens: int) -> list[str]:
        bodies = [self.request_body(messages, sample_images, max_new_tokens)
                  for messages, sample_images in zip(conversations, images, strict=True)]
        return list(self._pool.map(self._complete, bodies))

    def _complete(self, body: dict) -> str:
        answer = self._post("/chat/completions", body)
        try:
            choice = answer["choices"][0]
            if self.tokenizer is not None and choice.get("token_ids") is not None:
                from .generate import decode_tokens

                return decode_tokens(self.tokenizer, choice["token_ids"], self.server.keep_special_tokens)
            return choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as err:
            raise RequestRejected(f"{self.base_url}: unexpected chat completion {str(answer)[:300]}") from err

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.server.api_key:
            headers["Authorization"] = f"Bearer {self.server.api_key}"
        return headers

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode("utf-8")
        wait, last_error = self.server.retry_wait, None
        for attempt in range(self.server.max_retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            request = urllib.request.Request(self.base_url + path, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.server.request_timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code < 500:
                    raise RequestRejected(f"{self.base_url}{path}: HTTP {err.code}: {detail}") from err
                last_error = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                last_error = f"{type(err).__name__}: {err}"
        raise ServerUnavailable(f"{self.base_url}{path} failed {self.server.max_retries + 1} times; last error: "
                                f"{last_error}. Finished batches are saved; rerun the same command to resume.")

    def wait_until_ready(self, timeout: float = 600.0, poll: float = 2.0) -> None:
        """Block until GET /models answers (a vLLM server loads for minutes before it serves)."""
        deadline = time.monotonic() + timeout
        last_error = None
        while time.monotonic() < deadline:
            request = urllib.request.Request(self.base_url + "/models", headers=self._headers())
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                last_error = err
            time.sleep(poll)
        raise ServerUnavailable(f"{self.base_url} did not answer /models within {timeout:.0f} s ({last_error})")



def connect(model: str, base_url: str, api_key: str | None = None, concurrency: int = 8,
            image_markers: str = "auto", template_kwargs: dict | None = None, max_retries: int = 5,
            server_wait: float = 600.0) -> tuple[OpenAIBackend, ServedModel]:
    """An OpenAIBackend for `model` served at `base_url`, set up from the checkpoint's local files (placeholder
    mode, harmony decoding, tokenizer), once the server answers. Shared by evaluation and curation."""
    served = describe_served_model(model)
    backend = OpenAIBackend(OpenAIServer(
        base_url=base_url, model=str(model), api_key=api_key, concurrency=concurrency,
        image_markers=served.image_markers if image_markers == "auto" else image_markers,
        keep_special_tokens=served.harmony, template_kwargs=dict(template_kwargs or {}), max_retries=max_retries),
        tokenizer=load_local_tokenizer(str(model)))
    backend.wait_until_ready(timeout=server_wait)
    return backend, served

__all__ = ["OpenAIBackend", "OpenAIServer", "RequestRejected", "ServedModel", "ServerUnavailable",
           "describe_served_model", "image_data_url", "load_local_tokenizer", "to_openai_messages"]
