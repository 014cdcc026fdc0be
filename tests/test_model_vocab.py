"""The builder's vocabulary fit: image tokens get mean-initialised rows, the table never shrinks, stays a multiple of 64.

The first test uses GPT-oss's real sizes, built offline: a tokenizer of 200,019 entries whose special tokens sit at
the ids of openai/gpt-oss-20b's tokenizer_config.json (199,998-200,018), and an embedding table of 201,088 rows whose
padding rows are zero, as in a trained checkpoint (untrained rows). The model is GPT-oss with a hidden size of 8.
"""

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models
from transformers import AutoModelForCausalLM, GptOssConfig, PreTrainedTokenizerFast, Qwen2Config

from llava_medgpt.constants import IMAGE_SPECIAL_TOKENS, IMAGE_TOKEN
from llava_medgpt.model import MedGptConfig
from llava_medgpt.model.builder import build_from_parts
from llava_medgpt.model.tiny import create_tiny_language_model, create_tiny_vision_tower

GPT_OSS_TOKENIZER_SIZE = 200_019
GPT_OSS_EMBEDDING_ROWS = 201_088
# openai/gpt-oss-20b tokenizer_config.json, added_tokens_decoder
GPT_OSS_SPECIAL_TOKENS = {
    199998: "<|startoftext|>", 199999: "<|endoftext|>", 200000: "<|reserved_200000|>",
    200001: "<|reserved_200001|>", 200002: "<|return|>", 200003: "<|constrain|>", 200004: "<|reserved_200004|>",
    200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
    200009: "<|reserved_200009|>", 200010: "<|reserved_200010|>", 200011: "<|reserved_200011|>", 200012: "<|call|>",
    200013: "<|reserved_200013|>", 200014: "<|reserved_200014|>", 200015: "<|reserved_200015|>",
    200016: "<|reserved_200016|>", 200017: "<|reserved_200017|>", 200018: "<|endofprompt|>",
}


def gpt_oss_sized_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"t{i}": i for i in range(min(GPT_OSS_SPECIAL_TOKENS))}
    vocab.update({token: i for i, token in GPT_OSS_SPECIAL_TOKENS.items()})
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")),
        bos_token="<|startoftext|>", eos_token="<|return|>", pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in GPT_OSS_SPECIAL_TOKENS.values()
                                   if t not in ("<|startoftext|>", "<|return|>", "<|endoftext|>")],
    )
    assert len(tokenizer) == GPT_OSS_TOKENIZER_SIZE
    assert tokenizer.convert_tokens_to_ids("<|start|>") == 200006
    return tokenizer


def gpt_oss_sized_language_model(path):
    config = GptOssConfig(
        vocab_size=GPT_OSS_EMBEDDING_ROWS, hidden_size=8, intermediate_size=8, head_dim=4, num_attention_heads=2,
        num_key_value_heads=1, num_hidden_layers=1, layer_types=["full_attention"], num_local_experts=2,
        num_experts_per_tok=1, pad_token_id=199999, eos_token_id=200002,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # padding rows of a trained GPT-oss are untrained
        model.get_input_embeddings().weight[GPT_OSS_TOKENIZER_SIZE:] = 0
        model.get_output_embeddings().weight[GPT_OSS_TOKENIZER_SIZE:] = 0
    model.save_pretrained(path)
    gpt_oss_sized_tokenizer().save_pretrained(path)
    return path


def test_gpt_oss_image_tokens_take_reserved_rows_at_the_mean_and_the_table_keeps_201088_rows(tmp_path):
    """Fails on the old main, which resized to len(tokenizer) = 200,022 rows (cutting 1,066 rows of the embedding and
    lm_head, a width no multiple of 64) and left the image rows at the padding rows' zeros."""
    lm_path = gpt_oss_sized_language_model(tmp_path / "lm")
    model, processor = build_from_parts(str(lm_path), str(create_tiny_vision_tower(tmp_path / "vision", "clip")))
    tokenizer = processor.tokenizer
    assert len(tokenizer) == GPT_OSS_TOKENIZER_SIZE + 3
    image_ids = tokenizer.convert_tokens_to_ids(list(IMAGE_SPECIAL_TOKENS))
    assert sorted(image_ids) == [200019, 200020, 200021]
    assert model.config.image_token_id == image_ids[IMAGE_SPECIAL_TOKENS.index(IMAGE_TOKEN)]
    assert model.config.image_token_id == MedGptConfig().image_token_id  # the default config is this model's

    saved = load_file(lm_path / "model.safetensors")
    for name, module in (("model.embed_tokens.weight", model.get_input_embeddings()),
                         ("lm_head.weight", model.get_output_embeddings())):
        weight, before = module.weight.detach(), saved[name]
        assert weight.shape == (GPT_OSS_EMBEDDING_ROWS, 8) and weight.shape[0] % 64 == 0
        mean = before[:GPT_OSS_TOKENIZER_SIZE].double().mean(dim=0)
        for i in image_ids:
            torch.testing.assert_close(weight[i].double(), mean, rtol=1e-5, atol=1e-7)
        assert mean.norm() > 0
        untouched = torch.ones(GPT_OSS_EMBEDDING_ROWS, dtype=torch.bool)
        untouched[image_ids] = False
        assert torch.equal(weight[untouched], before[untouched])  # every other row as loaded, padding rows included
    assert model.config.text_config.vocab_size == GPT_OSS_EMBEDDING_ROWS


@pytest.mark.parametrize("tied", [False, True])
def test_a_table_without_room_grows_to_the_next_multiple_of_64(tmp_path, tied):
    """The tiny LM's table has exactly its tokenizer's 640 rows: three tokens more grow it to 704, never to 643
    (the old main's size). Tied embeddings (Qwen2-0.5B style) share the rows."""
    lm_path = create_tiny_language_model(tmp_path / "lm", "qwen2", seed=1)
    if tied:
        config = Qwen2Config.from_pretrained(lm_path)
        config.tie_word_embeddings = True
        torch.manual_seed(1)
        AutoModelForCausalLM.from_config(config).save_pretrained(lm_path)
    saved = load_file(lm_path / "model.safetensors")
    model, processor = build_from_parts(str(lm_path), str(create_tiny_vision_tower(tmp_path / "vision", "clip")))
    assert len(processor.tokenizer) == 643
    names = ["model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"])
    modules = {"model.embed_tokens.weight": model.get_input_embeddings(), "lm_head.weight": model.get_output_embeddings()}
    if tied:
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    for name in names:
        weight, before = modules[name].weight.detach(), saved[name]
        assert weight.shape[0] == 704
        assert torch.equal(weight[:640], before)
        mean = before.double().mean(dim=0)
        for row in range(640, 704):  # the three image tokens and the 61 padding rows the table gained
            torch.testing.assert_close(weight[row].double(), mean, rtol=1e-5, atol=1e-7)
    assert model.config.text_config.vocab_size == 704
