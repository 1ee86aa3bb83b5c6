"""What makes minibert's outputs behave like transformers' `ModelOutput`, so code written for one takes the other:
Hugging Face's Trainer, accelerate and evaluation loops read `outputs["loss"]` or `outputs[0]` and slice
`outputs[1:]`; notebooks read `out.logits`.

    out = model(**batch, labels=labels)
    out.logits is out["logits"]           # attribute or key
    out[0] is out.loss                    # index: the fields that are not None, in declaration order
    loss, logits = out.to_tuple()         # the same fields as a tuple
    list(out.keys())                      # ["loss", "logits"]: a field that is None is not a key

As in transformers, an output is an ordered dict of its non-None fields (so `isinstance(out, dict)` holds, which
is what Trainer tests), and the loss comes first when labels were given. It is also a pytree node, so
`torch.utils._pytree` (DDP with static graphs, torch.compile, torch.export) sees the tensors inside.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import fields
from typing import Any

import torch.utils._pytree as pytree


class ModelOutput(OrderedDict):
    """Base of the @dataclass outputs in model.py. Fields set to None are attributes but not keys."""

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        pytree.register_pytree_node(cls, lambda out: (list(out.values()), list(out.keys())),
                                    lambda values, keys: cls(**dict(zip(keys, values))),
                                    serialized_type_name=f"{cls.__module__}.{cls.__qualname__}")

    def __getitem__(self, key: str | int | slice) -> Any:
        return super().__getitem__(key) if isinstance(key, str) else self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        # The dataclass's __init__ sets each field in declaration order, which is the keys' order.
        if name in {field.name for field in fields(self)}:  # keep the key and the attribute in step
            if value is None:
                super().pop(name, None)
            else:
                super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in {field.name for field in fields(self)}:
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are not None, in declaration order."""
        return tuple(self.values())

    def __reduce__(self):  # pickling (DataLoader workers, multiprocessing) rebuilds from the fields
        return type(self), tuple(getattr(self, field.name) for field in fields(self))
