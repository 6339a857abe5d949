"""The floating-point operations of an encoder's step, counted from its shape and its inputs' lengths:
divided by a measured step time they give the achieved FLOP/s (against hardware.matmul_flops's peak),
and divided into a GPU's peak the samples per second it needs to be fed."""


def non_embedding_parameters(model) -> int:
    """Embedding lookups do no multiply-adds: only the other parameters count toward FLOPs."""
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def step_flops(lengths: list[int], config, non_embedding_params: int, training: bool) -> float:
    """2 FLOPs per parameter per token for a forward pass (x3 with the backward), plus attention:
    QK^T and attention x V, 2 * 2 * L^2 * hidden per layer and sequence, at each sequence's real length."""
    dense = 2 * non_embedding_params * sum(lengths)
    attention = 4 * config.hidden_size * config.num_hidden_layers * sum(n * n for n in lengths)
    return (dense + attention) * (3 if training else 1)
