"""An offline tokenizer for the tiny checkpoints: byte-level BPE trained in-process on a fixed corpus.

No tokenizer is downloaded; training on the same corpus gives the same vocabulary every time.
"""

from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..constants import HARMONY_ENDOFTEXT, HARMONY_RETURN, HARMONY_SPECIAL_TOKENS, IMAGE_SPECIAL_TOKENS

TINY_BPE_VOCAB_SIZE = 640

# ChatML, as Qwen2 tokenizers ship it (system turn optional).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama-3 instruct format.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyTokenizerSpec:
    special_tokens: tuple[str, ...]
    eos_token: str
    pad_token: str
    bos_token: str | None = None
    chat_template: str | None = None  # None: the processor's medical_harmony template renders the chat


TINY_TOKENIZER_SPECS = {
    "gpt_oss": TinyTokenizerSpec(
        special_tokens=("<|startoftext|>",) + HARMONY_SPECIAL_TOKENS,
        eos_token=HARMONY_RETURN,
        pad_token=HARMONY_ENDOFTEXT,
        bos_token="<|startoftext|>",
    ),
    "qwen2": TinyTokenizerSpec(
        special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    ),
    "llama": TinyTokenizerSpec(
        special_tokens=(
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
        ),
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        bos_token="<|begin_of_text|>",
        chat_template=LLAMA3_TEMPLATE,
    ),
}


def _training_corpus() -> list[str]:
    """Short clinical and chat-format text, enough for the BPE merges to cover common words."""
    findings = ["cardiomegaly", "pleural effusion", "pneumothorax", "consolidation", "atelectasis", "edema",
                "nodule", "fracture", "opacity", "lesion", "mass", "infiltrate"]
    regions = ["left lower lobe", "right upper lobe", "mediastinum", "lung apex", "costophrenic angle",
               "liver", "kidney", "brain", "colon", "skin", "heart", "chest"]
    modalities = ["chest X-ray", "CT scan", "MRI", "ultrasound", "histopathology slide", "dermoscopy image"]
    lines = [
        "You are ChatGPT, a large language model trained by OpenAI.",
        "Knowledge cutoff: 2024-06", "Current date: 2025-08-05", "Reasoning: low medium high",
        "# Valid channels: analysis, commentary, final. Channel must be included for every message.",
        "# Instructions", "You are a medical assistant. Answer the question about the image.",
        "system user assistant developer analysis final commentary",
        "Question: Which option is correct? Answer with the option's letter from the given choices directly.",
        "A. B. C. D. E. The answer is (C).", "Let me think step by step about the findings.",
        "FINDINGS: IMPRESSION: No acute cardiopulmonary process.",
    ]
    for i, finding in enumerate(findings):
        for j, region in enumerate(regions):
            modality = modalities[(i + j) % len(modalities)]
            lines.append(f"The {modality} shows {finding} in the {region}.")
            lines.append(f"Is there {finding} in the {region}? Yes, there is a small {finding}.")
            lines.append(f"No evidence of {finding}. The {region} appears normal on this {modality}.")
    return lines


def build_tiny_tokenizer(text_backbone: str = "gpt_oss", with_image_tokens: bool = True) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the backbone's special tokens (and the image tokens unless told not to).

    Without image tokens it stands for a hub language model's tokenizer, to which the builder adds them.
    """
    if text_backbone not in TINY_TOKENIZER_SPECS:
        raise ValueError(f"No tiny tokenizer for backbone {text_backbone!r}; known: {sorted(TINY_TOKENIZER_SPECS)}")
    spec = TINY_TOKENIZER_SPECS[text_backbone]
    special_tokens = spec.special_tokens + (IMAGE_SPECIAL_TOKENS if with_image_tokens else ())
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_BPE_VOCAB_SIZE,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_training_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=spec.eos_token,
        pad_token=spec.pad_token,
        bos_token=spec.bos_token,
        additional_special_tokens=[t for t in special_tokens if t not in (spec.eos_token, spec.pad_token, spec.bos_token)],
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    if spec.chat_template is not None:
        tokenizer.chat_template = spec.chat_template
    return tokenizer
