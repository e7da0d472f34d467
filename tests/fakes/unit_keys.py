"""Units' signing keys made by a test: an Ed25519 key per unit, the public registry and the
private key files, in a folder of the test's (README, "Signed hand-offs")."""
from datetime import datetime, timezone
from pathlib import Path

from motcua.contracts.signing import KeyRegistry
from motcua.runtime import keys

KEYS_FROM = datetime(2026, 1, 1, tzinfo=timezone.utc)      # before the tests' clock (March 2026)


class UnitKeys:
    """Test keys, made here: one Ed25519 key per unit, its registry and its private key files."""

    def __init__(self, folder: Path, units):
        self.registry_file, self.private_dir = folder / "registry.yml", folder / "private"
        registry, self.key_ids, self.private = KeyRegistry(), {}, {}
        for unit in units:
            registry, key, private = keys.new_key(registry, unit, KEYS_FROM)
            keys.write_private_key(self.private_dir, key.key_id, private)
            self.key_ids[unit], self.private[unit] = key.key_id, private
        keys.write_registry(self.registry_file, registry)
        # The platform signs the hand-overs of the agencies working on it with these keys, and the
        # gateway verifies the units' events with the registry.
        self.env = {"MOTCUA_KEY_REGISTRY": str(self.registry_file), "MOTCUA_SIGNING_KEYS": str(self.private_dir)}

    def sign(self, unit: str, event: dict) -> dict:
        from motcua_client import sign_event        # the unit systems' client (grpcio): only when signing
        return sign_event(event, unit, self.key_ids[unit], self.private[unit])
