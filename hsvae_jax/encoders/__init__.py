"""Pretrained sentence encoders: BERT-family transformers read from Hugging Face model files."""

from hsvae_jax.encoders.bert import (
    POOLINGS, Bert, BertConfig, Pretrained, encode_batch, load_pretrained)

__all__ = ["Bert", "BertConfig", "POOLINGS", "Pretrained", "encode_batch", "load_pretrained"]
