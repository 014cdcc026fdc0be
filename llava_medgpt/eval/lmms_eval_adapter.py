"""lmms-eval model adapter ("simple" model type), so a MedGPT-oss checkpoint can be scored by the
LLaVA-OneVision team's framework with the same chat template and preprocessing as our own harness.

Run as (where lmms-eval is installed; see docs/evaluation.md for why it is not installed here):
    python -c "import llava_medgpt.eval.lmms_eval_adapter" && \
    python -m lmms_eval --model llava_medgpt --model_args pretrained=CKPT,batch_size=8 --tasks mmmu_val

Importing this module registers the adapter under the name "llava_medgpt" in lmms-eval's model registry.
"""

from collections.abc import Iterator

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.api.registry import register_model
from tqdm import tqdm

from ..constants import IMAGE_MARKER
from ..inference.generate import decode
from ..inference.models import load_chat_model
from .harmony import answer_text


def _batches(requests: list[Instance], size: int) -> Iterator[list[Instance]]:
    for start in range(0, len(requests), size):
        yield requests[start:start + size]


@register_model("llava_medgpt")
class LlavaMedGptLmms(lmms):
    """generate_until only: greedy decoding through the checkpoint's chat template, images as "<image>"
    markers before the question (lmms-eval's image-first convention), harmony final channel returned."""

    def __init__(self, pretrained: str, batch_size: int | str = 1, max_new_tokens: int | str = 1024, **kwargs):
        super().__init__()
        self.chat = load_chat_model(pretrained)
        self.batch_size_per_gpu = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)

    def _inputs(self, request: Instance) -> tuple[str, list, dict]:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
        visuals = [v for v in (doc_to_visual(self.task_dict[task][split][doc_id]) or []) if v is not None]
        content = "".join(f"{IMAGE_MARKER}\n" for _ in visuals) + context
        prompt = self.chat.adapter.render(self.chat, [{"role": "user", "content": content}], self.chat.template_kwargs)
        return prompt, [v.convert("RGB") for v in visuals], gen_kwargs

    def generate_until(self, requests: list[Instance]) -> list[str]:
        answers = []
        for batch in tqdm(list(_batches(requests, self.batch_size_per_gpu)), desc="llava_medgpt"):
            prompts, images, gen_kwargs = zip(*(self._inputs(r) for r in batch))
            inputs = self.chat.adapter.encode(self.chat, list(prompts), list(images))
            inputs = {k: v.to(self.chat.model.device) for k, v in inputs.items()}
            max_new = int(gen_kwargs[0].get("max_new_tokens", self.max_new_tokens))
            output = self.chat.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new,
                                              pad_token_id=self.chat.tokenizer.pad_token_id)
            for row in output[:, inputs["input_ids"].shape[1]:]:
                text = decode(self.chat, row)
                answers.append((answer_text(text) or "") if self.chat.harmony else text)
        return answers

    def loglikelihood(self, requests):
        raise NotImplementedError("llava_medgpt is scored by generation only (paper, section 4.3)")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("multi-round generation is not used by the paper's benchmarks")
