"""Runs in .venv-vllm (started by tests/test_vllm_serving.py): greedy `vllm.LLM` generation for a JSON list of
cases {"prompt": text, "images": [png paths], "max_tokens": n}; writes prompt and output token ids as JSON.

    .venv-vllm/bin/python tests/vllm_offline_worker.py CKPT CASES.json OUT.json
"""

import json
import os
import sys


def main() -> None:
    from PIL import Image
    from vllm import LLM, SamplingParams

    checkpoint, cases_path, out_path = sys.argv[1:4]
    cases = json.loads(open(cases_path, encoding="utf-8").read())
    llm = LLM(model=checkpoint, dtype="float32", max_model_len=int(os.environ.get("MAX_MODEL_LEN", "4096")),
              enforce_eager=True, seed=0, limit_mm_per_prompt={"image": 4})
    prompts = []
    for case in cases:
        prompt = {"prompt": case["prompt"]}
        if case["images"]:
            prompt["multi_modal_data"] = {"image": [Image.open(path).convert("RGB") for path in case["images"]]}
        prompts.append(prompt)
    params = [SamplingParams(temperature=0.0, max_tokens=case["max_tokens"]) for case in cases]
    results = llm.generate(prompts, params)
    out = [{"prompt_token_ids": list(r.prompt_token_ids), "output_token_ids": list(r.outputs[0].token_ids)}
           for r in results]
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f)


if __name__ == "__main__":  # vLLM's engine starts its workers with spawn
    main()
