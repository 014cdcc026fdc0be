"""Text-matching cost of decontamination: exact matches only, + contained questions (the default), + 13-grams.

Synthetic data (seeded): EVAL eval questions of 20-120 words (text-only items, like MedQA vignettes) and RECORDS
training records whose prompt turn has 50-400 words, drawn from a 20,000-word vocabulary. Reported: records per
second of `find_overlap` for each setting, and its ratio to exact-only matching in the same run (CPU time of
this process, one thread).

Run as: python bench/bench_decontaminate.py [--records 20000] [--eval 5000]
"""

import argparse
import random
import time

from llava_medgpt.data.decontaminate import JsonlEvalItem, build_eval_index, find_overlap


def words(rng: random.Random, vocabulary: list[str], low: int, high: int) -> str:
    return " ".join(rng.choices(vocabulary, k=rng.randint(low, high)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--eval", type=int, default=5000)
    args = parser.parse_args()
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(20000)]
    items = [JsonlEvalItem("bench", str(i), words(rng, vocabulary, 20, 120), []) for i in range(args.eval)]
    records = [{"id": str(i), "conversations": [{"from": "human", "value": words(rng, vocabulary, 50, 400)},
                                                {"from": "gpt", "value": "x"}]} for i in range(args.records)]
    settings = {"exact": dict(min_contained_words=None, ngram=0),
                "exact + contained (default)": dict(min_contained_words=10, ngram=0),
                "exact + contained + 13-grams": dict(min_contained_words=10, ngram=13)}
    baseline = None
    print(f"{args.records:,} records (50-400 words), {args.eval:,} eval questions (20-120 words)")
    print(f"{'setting':<30}  {'index s':>8}  {'records/s':>10}  {'vs exact':>8}")
    for name, options in settings.items():
        start = time.process_time()
        index = build_eval_index(items, ngram=options["ngram"], min_contained_words=options["min_contained_words"])
        built = time.process_time() - start
        start = time.process_time()
        hits = sum(find_overlap(r, index, None, ngram=options["ngram"]) is not None for r in records)
        rate = args.records / (time.process_time() - start)
        baseline = baseline or rate
        print(f"{name:<30}  {built:>8.2f}  {rate:>10,.0f}  {rate / baseline:>8.2f}  ({hits} hits)")


if __name__ == "__main__":
    main()
