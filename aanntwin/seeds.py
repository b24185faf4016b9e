"""Seeds: independent streams derived from one seed, and the seeded noise source of a network."""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (e.g. ``(seed, epoch, "shuffle")``): independent streams."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class NoiseSource:
    """Seeded ``torch.Generator`` per device for temporal noise.

    Generators live on the device of the tensors they fill (no host round trip). Re-seeding
    restarts every device's stream; moving a model to a new device starts that device's stream
    from the current seed.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def reseed(self, seed: int) -> None:
        self.seed = seed
        self._generators.clear()

    def generator(self, device: torch.device) -> torch.Generator | None:
        if device.type == "meta":
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[device] = gen
        return gen

    def __repr__(self) -> str:
        return f"NoiseSource(seed={self.seed})"
