"""The quantization table: variant names, rows with size / bits-per-char / pfgen columns and paired deltas, and
`lab post quantize --report`."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

import lab.post.quant_table as quant_table
from lab.data.text import Tokenizer, TokenizerConfig
from lab.models.plamo import create_plamo, save_pretrained
from lab.post.measure import build_question_set, paired_difference
from lab.post.quant_table import PfgenSetup, Variant, quantization_table, table_markdown
from lab.post.quantize import QuantizationError

TEXT = {"n_entities": 30}
SMALL = dict(hidden_size=32, num_hidden_layers=2, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1,
             hidden_size_per_head=16, mamba_num_heads=2, mamba_d_state=8, attention_window_size=16,
             mamba_chunk_size=16, full_attention_idx=())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tokenizer of world_facts text, a tiny PLaMo and a 21-question lab set about that world (the harness
    builds 20-shot prompts from the set; only the first 3 questions are answered, to keep this fast)."""
    from lab.eval.pfgen.lab_sets import make_generators

    generator = make_generators(["world_facts"], 0, TEXT)[0]
    docs = [generator.document(i) for i in range(60)]
    tokenizer = Tokenizer.train(docs, TokenizerConfig(vocab_size=500, character_coverage=0.98))
    set_dir = build_question_set(["world_facts"], tmp_path_factory.mktemp("set"), questions=21, answers=5,
                                 options=TEXT)
    torch.manual_seed(0)
    model = create_plamo("plamo-2-tiny", vocab_size=tokenizer.vocab_size, **SMALL).eval()
    return tokenizer, model, set_dir, docs[40:46]


def test_variant_names_parse_and_bad_names_list_the_valid_ones():
    assert Variant.parse("int4-g32") == Variant("int4-g32", 4, 32)
    assert Variant.parse("int8") == Variant("int8", 8, None) == Variant.of(8, None)
    assert Variant.parse("bf16").bits is None and Variant.of(4, 64).name == "int4-g64"
    for bad in ("int3", "fp16", "int4-g", "int8-32"):
        with pytest.raises(ValueError, match="valid: float32, bf16, int8, int4"):
            Variant.parse(bad)


def test_paired_difference_uses_shared_questions():
    a = {"Q1": 0.5, "Q2": 0.7, "Q3": 0.4, "Q9": 1.0}
    b = {"Q1": 0.4, "Q2": 0.5, "Q3": 0.4}
    paired = paired_difference(a, b)
    assert paired["n"] == 3 and paired["diff"] == pytest.approx(0.1)
    assert paired["se"] == pytest.approx((((0.0) ** 2 + 0.1**2 + 0.1**2) / 2 / 3) ** 0.5)
    with pytest.raises(ValueError, match=">= 2 shared questions"):
        paired_difference({"Q1": 1.0}, {"Q1": 0.0})


def test_table_rows_size_bits_per_char_and_paired_pfgen(world, tmp_path):
    tokenizer, model, set_dir, texts = world
    variants = [Variant.parse(v) for v in ("float32", "int8", "int4-g32")]
    pfgen = PfgenSetup(set_dir, tmp_path / "pfgen", questions=3, trials=2, max_new_tokens=6, batch_size=3)
    rows = quantization_table(model, tokenizer, variants, texts, pfgen=pfgen, speed=False, eval_max_len=64)
    assert [r["variant"] for r in rows] == ["float32", "int8", "int4-g32"]
    assert rows[0]["delta_bits_per_char"] == 0 and rows[0]["delta_pfgen"] == 0 and rows[0]["delta_pfgen_se"] == 0
    assert rows[0]["size_mb"] > rows[1]["size_mb"] > rows[2]["size_mb"]
    assert abs(rows[1]["delta_bits_per_char"]) < 0.01 < rows[0]["bits_per_char"]  # int8 barely moves bits/char
    assert all(0 <= r["pfgen_score"] <= 1 and r["delta_pfgen_se"] >= 0 for r in rows)
    assert (tmp_path / "pfgen" / "int4-g32" / "trials.jsonl.xz").is_file()
    assert "forward_tokens_per_s" not in rows[0]
    text = table_markdown(rows)
    assert text.splitlines()[0].startswith("| variant | size MB | bits/char") and "± se" in text


def test_a_group_size_that_does_not_divide_fails_before_measuring(world):
    tokenizer, model, _, _ = world

    class NoTexts(list):
        def __iter__(self):
            raise AssertionError("measured before the variants were checked")

    with pytest.raises(QuantizationError, match="does not divide|divid"):
        quantization_table(model, tokenizer, [Variant("float32"), Variant.parse("int4-g24")], NoTexts([""]))


def test_cli_quantize_report_writes_the_float_and_quantized_rows(world, tmp_path, monkeypatch):
    from experiments.post_cli import add_post_commands

    tokenizer, model, set_dir, texts = world
    tokenizer.save(save_pretrained(model, tmp_path / "float"))
    monkeypatch.setattr(quant_table, "heldout_texts", lambda docs: texts[:docs])  # the real set loads manpages-ja
    parser = argparse.ArgumentParser()
    add_post_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["post", "quantize", "--model", str(tmp_path / "float"), "--bits", "8", "--group-size",
                              "32", "--out", str(tmp_path / "q"), "--report", "--eval-docs", "4", "--pfgen-set",
                              str(set_dir), "--pfgen-questions", "3"])
    assert args.handler(args) == 0
    report = json.loads((tmp_path / "q" / "quantization_report.json").read_text())
    assert [r["variant"] for r in report["rows"]] == ["float32", "int8-g32"]
    assert report["rows"][1]["size_mb"] < report["rows"][0]["size_mb"] and "pfgen_score" in report["rows"][1]
    assert "| int8-g32 |" in (tmp_path / "q" / "quantization_report.md").read_text()
    assert (tmp_path / "q" / "tokenizer.model").is_file()
