"""Initialising a model for fine-tuning from any checkpoint the loader reads, letting the class head differ."""
from __future__ import annotations

from pathlib import Path

from m2f.errors import CheckpointError

CLASS_HEAD = "sem_seg_head.predictor.class_embed."


def init_from_checkpoint(model, path: str | Path, trust: bool = False) -> list[str]:
    """Copy every weight of ``path`` into ``model`` by name. The class head (K+1 outputs) may have another class
    count and then keeps its fresh initialisation; any other missing or mis-shaped weight is a CheckpointError.
    Returns notes for the user."""
    from m2f.model.checkpoint import read_weights

    tensors = read_weights(path, trust=trust)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors and "num_batches_tracked" not in k]
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    bad = [k for k in missing + mismatched if not k.startswith(CLASS_HEAD)]
    if bad:
        raise CheckpointError(f"{Path(path).name} does not fit the training preset: {len(bad)} weight(s) missing or "
                              f"of another shape, e.g. {', '.join(bad[:4])}; pick the preset the checkpoint was "
                              f"trained with")
    model.load_state_dict({k: tensors[k] for k in expected if k in tensors and k not in mismatched}, strict=False)
    if any(k.startswith(CLASS_HEAD) for k in mismatched):
        return [f"the class head was re-initialised for {model.config.num_classes} classes (the checkpoint has "
                f"{tensors[CLASS_HEAD + 'weight'].shape[0] - 1})"]
    return []
