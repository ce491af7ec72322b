"""Name -> constructor tables for encoders, decoders and whole models.

A registry is a plain dictionary filled by decorators at import time, so a user's own
encoder registered from outside the package is found by the same ``create_model`` call
as the built-in ones.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, TypeVar

from rtseg.errors import RtsegError

T = TypeVar("T")


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@ENCODERS.register("my_encoder")`` above a class or factory."""

        def add(obj: T) -> T:
            key = name or getattr(obj, "__name__").lower()
            if "-" in key:
                raise ValueError(f"{self.kind} name {key!r} must not contain '-': "
                                 "it separates decoder and encoder in model names")
            if key in self._entries and self._entries[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = obj
            return obj

        return add

    def get(self, name: str) -> Callable:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise RtsegError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
# Whole networks that do not split into encoder + decoder (ENet, SegNet, ...).
MODELS = Registry("model")

register_encoder = ENCODERS.register
register_decoder = DECODERS.register
register_model = MODELS.register
