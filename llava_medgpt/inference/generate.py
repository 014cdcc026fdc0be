"""Generation backends: a batch of chat conversations (+ their images) -> one decoded output per conversation.

Every caller (the evaluation harness, curation's LLM step, the chat CLI) speaks to a `GenerationBackend`, so
an OpenAI-compatible server or another engine can stand in for transformers' `generate` without changing them.

    backend = HFBackend(load_chat_model("outputs/stage2"))
    outputs = backend.generate([[{"role": "user", "content": "<image>\\nWhat is shown?"}]], [[image]],
                               max_new_tokens=64)
"""

from typing import Protocol

import torch
from PIL import Image

from .models import ChatModel


class GenerationBackend(Protocol):
    """Deterministic greedy decoding of conversations whose content strings carry "<image>" markers."""

    def generate(self, conversations: list[list[dict]], images: list[list[Image.Image]],
                 max_new_tokens: int) -> list[str]: ...


def decode_tokens(tokenizer, ids: list[int], harmony: bool) -> str:
    """New token ids -> text, the one decoding rule of every backend. Trailing padding (after an early stop in a
    batch) is dropped; harmony outputs keep their special tokens (channels are parsed at scoring)."""
    ids = list(ids)
    while ids and ids[-1] == tokenizer.pad_token_id:
        ids.pop()
    return tokenizer.decode(ids, skip_special_tokens=not harmony)


def decode(chat: ChatModel, token_ids: torch.Tensor) -> str:
    return decode_tokens(chat.tokenizer, token_ids.tolist(), chat.harmony)


class HFBackend:
    """transformers `generate` on a loaded ChatModel: one left-padded batch per call, greedy."""

    def __init__(self, chat: ChatModel):
        self.chat = chat

    @torch.inference_mode()
    def generate(self, conversations: list[list[dict]], images: list[list[Image.Image]],
                 max_new_tokens: int) -> list[str]:
        chat = self.chat
        prompts = [chat.adapter.render(chat, messages, chat.template_kwargs) for messages in conversations]
        inputs = chat.adapter.encode(chat, prompts, images)
        inputs = {k: v.to(chat.model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        output = chat.model.generate(
            **inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, temperature=None, top_p=None,
            top_k=None, pad_token_id=chat.tokenizer.pad_token_id,
        )
        new_tokens = output[:, inputs["input_ids"].shape[1]:]  # [B, T_new]; left padding keeps prompts aligned
        return [decode(chat, row) for row in new_tokens]


__all__ = ["GenerationBackend", "HFBackend", "decode", "decode_tokens"]
