"""Name -> constructor tables for encoders, decoders and whole models.

A registry is a plain dictionary filled by decorators at import time, so a user's own
encoder registered from outside the package is found by the same ``create_model`` call
as the built-in ones. A *family* stands for names nobody registers one by one: every name
that starts with its prefix (``timm.`` for timm's backbones) goes to the family's resolver,
which checks the rest of the name and returns the constructor.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterator, TypeVar

from rtseg.errors import RtsegError

T = TypeVar("T")


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, Callable] = {}
        self._families: Dict[str, Callable[[str], Callable]] = {}

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

    def register_family(self, prefix: str) -> Callable[[T], T]:
        """Decorator over ``resolve(rest) -> constructor`` for every name ``prefix + rest``."""
        if "-" in prefix or not prefix.endswith("."):
            raise ValueError(f"{self.kind} family prefix {prefix!r} must end in '.' and not contain '-'")

        def add(resolve: T) -> T:
            if prefix in self._families and self._families[prefix] is not resolve:
                raise ValueError(f"{self.kind} family {prefix!r} is already registered")
            self._families[prefix] = resolve
            return resolve

        return add

    def get(self, name: str) -> Callable:
        if name in self._entries:
            return self._entries[name]
        for prefix, resolve in self._families.items():
            if name.startswith(prefix):
                return resolve(name[len(prefix):])
        known = ", ".join(self.names() + [f"{p}<name>" for p in self.families()]) or "none"
        raise RtsegError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")

    def names(self) -> list[str]:
        """Registered names; a family's members are not listed (``families`` gives the prefixes)."""
        return sorted(self._entries)

    def families(self) -> list[str]:
        return sorted(self._families)

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        if not isinstance(name, str) or not any(name.startswith(p) for p in self._families):
            return False
        try:
            self.get(name)
        except RtsegError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ENCODERS = Registry("encoder")
DECODERS = Registry("decoder")
# Whole networks that do not split into encoder + decoder (ENet, SegNet, ...).
MODELS = Registry("model")

register_encoder = ENCODERS.register
register_decoder = DECODERS.register
register_model = MODELS.register
