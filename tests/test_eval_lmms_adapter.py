"""The lmms-eval adapter, against the real lmms-eval package (installed without its dependencies by setup.sh).

Requests are built the way lmms-eval's evaluator builds them (Instance with (context, gen_kwargs, doc_to_visual,
doc_id, task, split); docs in `lm.task_dict[task][split]`), and the adapter's answers must equal our own
harness's greedy decode of the same chat through the same checkpoint, image and text-only alike.
"""

import pytest
import torch
from PIL import Image

lmms_eval = pytest.importorskip("lmms_eval")
from lmms_eval.api.instance import Instance  # noqa: E402
from lmms_eval.api.registry import MODEL_REGISTRY  # noqa: E402

import llava_medgpt.eval.lmms_eval_adapter  # noqa: E402,F401  (registers "llava_medgpt")
from llava_medgpt.constants import IMAGE_MARKER  # noqa: E402
from llava_medgpt.inference.generate import decode  # noqa: E402
from llava_medgpt.eval.harmony import answer_text  # noqa: E402

MAX_NEW_TOKENS = 6
DOCS = [
    {"question": "Which organ is shown?", "image": Image.new("RGB", (420, 300), (200, 40, 40))},
    {"question": "Is the lesion benign?", "image": Image.new("RGB", (336, 336), (20, 160, 90))},
    {"question": "What is the first-line drug for hypertension?", "image": None},
]


def doc_to_visual(doc):
    return [] if doc["image"] is None else [doc["image"]]


def requests() -> list[Instance]:
    return [Instance("generate_until", (doc["question"], {"max_new_tokens": MAX_NEW_TOKENS}, doc_to_visual, i,
                                        "medvqa", "test"), idx=0,
                     metadata={"task": "medvqa", "doc_id": i, "repeats": 1}) for i, doc in enumerate(DOCS)]


@torch.inference_mode()
def reference_answer(chat, doc) -> str:
    """Our harness's way: image markers first, the model's chat template, one greedy decode, the final channel."""
    images = doc_to_visual(doc)
    content = "".join(f"{IMAGE_MARKER}\n" for _ in images) + doc["question"]
    prompt = chat.adapter.render(chat, [{"role": "user", "content": content}], chat.template_kwargs)
    inputs = chat.adapter.encode(chat, [prompt], [images])
    output = chat.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=MAX_NEW_TOKENS,
                                 pad_token_id=chat.tokenizer.pad_token_id)
    text = decode(chat, output[0, inputs["input_ids"].shape[1]:])
    return answer_text(text) or ""


@pytest.mark.parametrize("batch_size", [1, 3])
def test_adapter_answers_equal_our_harness(tiny_checkpoint, batch_size):
    model = MODEL_REGISTRY["llava_medgpt"](pretrained=str(tiny_checkpoint("gpt_oss")), batch_size=batch_size)
    model.task_dict = {"medvqa": {"test": DOCS}}
    answers = model.generate_until(requests())
    assert answers == [reference_answer(model.chat, doc) for doc in DOCS]
    assert model.chat.harmony  # GPT-oss: answers come from the final channel


def test_adapter_is_generation_only(tiny_checkpoint):
    model = MODEL_REGISTRY["llava_medgpt"](pretrained=str(tiny_checkpoint("gpt_oss")))
    with pytest.raises(NotImplementedError, match="generation only"):
        model.loglikelihood(requests())
