"""Tests for callout.crypto: sealing, binding, key rings, key files and rotation."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callout.crypto import (
    CryptoError,
    DecryptionFailed,
    KeyRing,
    MasterKey,
    MissingMasterKey,
    Sealed,
    SecretBinding,
    create_key_file,
    load_key_ring,
    rotation_plan,
    write_key_file,
)
from callout.errors import CalloutError

BINDING = SecretBinding("org_a", "conn_1", "apiKey")
SECRET = "sk-test-not-a-real-key"
RING = KeyRing([MasterKey.generate("k1")])


def b64(key: MasterKey) -> str:
    return base64.b64encode(key.key).decode()


def leaks(exc: BaseException, *keys: MasterKey) -> bool:
    """Whether the message shows key material (a bool, so a failure never prints the key)."""
    text = str(exc)
    return any(
        b64(k) in text or base64.urlsafe_b64encode(k.key).decode() in text or k.key.hex() in text
        for k in keys
    )


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_round_trip() -> None:
    """A sealed secret opens to the same plaintext with the same binding."""
    sealed = RING.seal(SECRET, BINDING)
    assert sealed.key_id == "k1"
    assert len(sealed.nonce) == 12
    assert RING.open(sealed, BINDING) == SECRET


def test_plaintext_not_in_ciphertext() -> None:
    """The stored form does not contain the plaintext."""
    text = RING.seal(SECRET, BINDING).to_text()
    assert SECRET not in text
    assert base64.urlsafe_b64encode(SECRET.encode()).decode()[:12] not in text


def test_fresh_nonce_each_seal() -> None:
    """Two seals of the same plaintext differ in nonce and ciphertext."""
    first, second = RING.seal(SECRET, BINDING), RING.seal(SECRET, BINDING)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize(
    "moved",
    [
        SecretBinding("org_b", "conn_1", "apiKey"),
        SecretBinding("org_a", "conn_2", "apiKey"),
        SecretBinding("org_a", "conn_1", "password"),
        # Boundaries shifted between fields: the encoding is length-prefixed, not concatenated.
        SecretBinding("org_ac", "onn_1", "apiKey"),
    ],
    ids=["other-org", "other-connection", "other-field", "shifted-boundary"],
)
def test_moved_ciphertext_fails(moved: SecretBinding) -> None:
    """A ciphertext copied to another org, connection or field does not open."""
    sealed = RING.seal(SECRET, BINDING)
    with pytest.raises(DecryptionFailed) as info:
        RING.open(sealed, moved)
    assert info.value.code == "decryption_failed"
    assert SECRET not in str(info.value)


def test_associated_data_is_unambiguous() -> None:
    """Different bindings or key ids never share associated data."""
    ads = {
        SecretBinding("a", "bc", "d").associated_data("k1"),
        SecretBinding("ab", "c", "d").associated_data("k1"),
        SecretBinding("a", "b", "cd").associated_data("k1"),
        SecretBinding("a", "bc", "d").associated_data("k2"),
    }
    assert len(ads) == 4


def test_binding_rejects_empty_parts() -> None:
    """A binding with an empty org, connection or field is a programming error."""
    with pytest.raises(ValueError, match="org_id"):
        SecretBinding("", "conn_1", "apiKey")


def test_swapped_key_id_fails() -> None:
    """Relabelling a ciphertext with another key id of the ring does not open it."""
    ring = KeyRing([MasterKey.generate("k1"), MasterKey.generate("k2")])
    sealed = ring.seal(SECRET, BINDING)
    with pytest.raises(DecryptionFailed):
        ring.open(dataclasses.replace(sealed, key_id="k2"), BINDING)


def test_unknown_key_id_names_it() -> None:
    """A key id the ring does not hold fails with a message naming that id."""
    sealed = dataclasses.replace(RING.seal(SECRET, BINDING), key_id="k_retired")
    with pytest.raises(DecryptionFailed, match="k_retired") as info:
        RING.open(sealed, BINDING)
    assert info.value.key_id == "k_retired"


@pytest.mark.parametrize("part", ["nonce", "ciphertext", "tag"])
def test_tampered_fails(part: str) -> None:
    """Flipping one bit of the nonce, the ciphertext or the tag fails to open."""
    sealed = RING.seal(SECRET, BINDING)
    if part == "nonce":
        tampered = dataclasses.replace(sealed, nonce=flip(sealed.nonce))
    elif part == "ciphertext":
        tampered = dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext))
    else:
        tampered = dataclasses.replace(sealed, ciphertext=flip(sealed.ciphertext, -1))
    with pytest.raises(DecryptionFailed):
        RING.open(tampered, BINDING)


def test_wrong_key_fails() -> None:
    """A different key with the same id does not open the secret."""
    other = KeyRing([MasterKey.generate("k1")])
    with pytest.raises(DecryptionFailed) as info:
        other.open(RING.seal(SECRET, BINDING), BINDING)
    assert not leaks(info.value, RING.primary, other.primary)


def test_text_form_round_trips() -> None:
    """to_text gives the v1 ASCII form and from_text reads it back."""
    sealed = RING.seal(SECRET, BINDING)
    text = sealed.to_text()
    assert text.startswith("v1.k1.")
    assert text.isascii()
    assert "=" not in text
    assert Sealed.from_text(text) == sealed
    assert RING.open(Sealed.from_text(text), BINDING) == SECRET


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "v1.k1.AAAA",
        "v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.bad id.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.extra",
        "v1.k1.AAAA+AAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_text_form_rejects_garbage(text: str) -> None:
    """Malformed stored text raises DecryptionFailed, a CalloutError."""
    with pytest.raises(DecryptionFailed) as info:
        Sealed.from_text(text)
    assert isinstance(info.value, CryptoError)
    assert isinstance(info.value, CalloutError)


def test_two_key_ring_decrypts_both_and_seals_with_primary() -> None:
    """A ring opens values sealed under any of its keys and seals with the primary."""
    old, new = MasterKey.generate("old"), MasterKey.generate("new")
    under_old = KeyRing([old]).seal("a", BINDING)
    ring = KeyRing([old, new], primary_id="new")
    under_new = ring.seal("b", BINDING)
    assert ring.primary == new
    assert ring.key_ids() == ("new", "old")
    assert under_new.key_id == "new"
    assert ring.open(under_old, BINDING) == "a"
    assert ring.open(under_new, BINDING) == "b"


def test_ring_construction_errors() -> None:
    """An empty ring is a missing key; duplicate ids and an unknown primary are ValueErrors."""
    with pytest.raises(MissingMasterKey, match="callout init"):
        KeyRing([])
    with pytest.raises(ValueError, match="duplicate"):
        KeyRing([MasterKey.generate("k1"), MasterKey.generate("k1")])
    with pytest.raises(ValueError, match="primary"):
        KeyRing([MasterKey.generate("k1")], primary_id="k9")


def test_reseal_moves_to_primary() -> None:
    """reseal re-encrypts an old-key value under the primary, and is a no-op when already there."""
    old = KeyRing([MasterKey.generate("old")])
    sealed = old.seal(SECRET, BINDING)
    ring, new_key = rotation_plan(old)
    moved = ring.reseal(sealed, BINDING)
    assert moved.key_id == new_key.key_id
    assert ring.open(moved, BINDING) == SECRET
    assert ring.reseal(moved, BINDING) is moved


def test_reseal_checks_binding() -> None:
    """reseal of a value moved from another binding fails instead of laundering it."""
    old = KeyRing([MasterKey.generate("old")])
    sealed = old.seal(SECRET, BINDING)
    ring, _ = rotation_plan(old)
    with pytest.raises(DecryptionFailed):
        ring.reseal(sealed, SecretBinding("org_b", "conn_1", "apiKey"))


def test_rotation_plan_keeps_old_keys() -> None:
    """rotation_plan makes a new, distinct key primary and keeps every old key."""
    ring = KeyRing([MasterKey.generate(), MasterKey.generate("k0")])
    new_ring, key = rotation_plan(ring)
    assert new_ring.primary == key
    assert key.key_id not in ring.key_ids()
    assert new_ring.key_ids() == (key.key_id, *ring.key_ids())


def test_with_primary_rejects_conflicting_id() -> None:
    """with_primary refuses a different key under an id the ring already holds."""
    with pytest.raises(ValueError, match="k1"):
        RING.with_primary(MasterKey.generate("k1"))
    assert RING.with_primary(RING.primary).key_ids() == ("k1",)


def test_with_key_adds_decrypt_only_key() -> None:
    """with_key lets a ring open values under a new key while still sealing with the old primary."""
    staged_key = MasterKey.generate("k2")
    staged = RING.with_key(staged_key)
    assert staged.primary == RING.primary
    assert set(staged.key_ids()) == {"k1", "k2"}
    assert staged.seal(SECRET, BINDING).key_id == "k1"
    assert staged.open(KeyRing([staged_key]).seal(SECRET, BINDING), BINDING) == SECRET


def test_without_refuses_primary() -> None:
    """without drops a retired key but refuses the primary and unknown ids."""
    ring = KeyRing([MasterKey.generate("new"), MasterKey.generate("old")])
    assert ring.without("old").key_ids() == ("new",)
    with pytest.raises(CryptoError, match="primary"):
        ring.without("new")
    with pytest.raises(CryptoError, match="k9"):
        ring.without("k9")


def test_generated_ids_are_valid_and_sortable() -> None:
    """Default key ids are valid, distinct and start with a UTC timestamp."""
    ids = [MasterKey.generate().key_id for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(i.startswith("k20") and len(i) <= 32 for i in ids)
    assert len(MasterKey.generate().key) == 32


def test_master_key_validation() -> None:
    """A master key needs a short safe id and exactly 32 bytes; errors show no key bytes."""
    with pytest.raises(ValueError, match="id"):
        MasterKey("has.dot", os.urandom(32))
    with pytest.raises(ValueError, match="32 bytes") as info:
        MasterKey("k1", b"\x01" * 16)
    assert "\\x01" not in str(info.value)


def test_master_key_repr_hides_key() -> None:
    """repr of a MasterKey and of a KeyRing shows ids only."""
    key = MasterKey.generate("k1")
    ring = KeyRing([key])
    for text in (repr(key), str(key), repr(ring)):
        assert "k1" in text
        leaked = b64(key) in text or key.key.hex() in text or repr(key.key) in text
        assert not leaked


def test_env_value_round_trip() -> None:
    """to_env_value and from_env_value round-trip, primary first."""
    ring = KeyRing([MasterKey.generate("a"), MasterKey.generate("b")], primary_id="b")
    value = ring.to_env_value()
    assert value.startswith("b:")
    again = KeyRing.from_env_value(value)
    assert again.key_ids() == ("b", "a")
    assert again.open(ring.seal(SECRET, BINDING), BINDING) == SECRET
    spaced = KeyRing.from_env_value(" " + value.replace(",", " , ") + " ")
    assert spaced.key_ids() == ("b", "a")


def test_env_value_errors_never_contain_key_bytes() -> None:
    """Malformed CALLOUT_MASTER_KEYS entries name their position, never the key material."""
    good = MasterKey.generate("good")
    short = os.urandom(31)
    bad_values = {
        f"good:{b64(good)},{b64(good)}": "entry 2",  # no id: the whole entry is a key
        f"good:{b64(good)},k2:{base64.b64encode(short).decode()}": "entry 2",
        f"good:{b64(good)},k2:{b64(good)}!": "entry 2",
        f"bad id:{b64(good)}": "entry 1",
        f"good:{b64(good)},good:{b64(good)}": "duplicate",
        f"good:{b64(good)},": "entry 2",
    }
    for value, expected in bad_values.items():
        with pytest.raises(CryptoError) as info:
            KeyRing.from_env_value(value)
        assert expected in str(info.value)
        leaked = leaks(info.value, good) or base64.b64encode(short).decode() in str(info.value)
        assert not leaked
    with pytest.raises(MissingMasterKey):
        KeyRing.from_env_value(" , ")


def test_load_key_ring_prefers_env(tmp_path: Path) -> None:
    """A non-empty env value wins over the key file; an empty one falls back to the file."""
    path = tmp_path / "keys.json"
    file_ring = create_key_file(path)
    env_ring = KeyRing([MasterKey.generate("env")])
    assert load_key_ring(env_ring.to_env_value(), path).key_ids() == ("env",)
    assert load_key_ring("  ", path).key_ids() == file_ring.key_ids()
    assert load_key_ring(None, path).key_ids() == file_ring.key_ids()


def test_load_key_ring_missing(tmp_path: Path) -> None:
    """With neither env nor key file, loading says how to fix it."""
    for key_file in (None, tmp_path / "absent.json"):
        with pytest.raises(MissingMasterKey, match="callout init") as info:
            load_key_ring(None, key_file)
        assert "CALLOUT_MASTER_KEYS" in str(info.value)
        assert info.value.code == "missing_master_key"


def test_key_file_written_0600(tmp_path: Path) -> None:
    """write_key_file creates a 0600 file that loads back to the same ring."""
    path = tmp_path / "keys.json"
    ring = KeyRing([MasterKey.generate("a"), MasterKey.generate("b")], primary_id="b")
    write_key_file(path, ring)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["primary"] == "b"
    assert [k["id"] for k in doc["keys"]] == ["b", "a"]
    loaded = load_key_ring(None, path)
    assert loaded.primary == ring.primary
    assert loaded.open(ring.seal(SECRET, BINDING), BINDING) == SECRET


def test_key_file_never_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary file is already 0600 before it is renamed into place, whatever the umask."""
    seen: list[int] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    old_umask = os.umask(0)
    try:
        write_key_file(tmp_path / "keys.json", RING)
    finally:
        os.umask(old_umask)
    assert seen == [0o600]


def test_key_file_refused_when_group_readable(tmp_path: Path) -> None:
    """A key file with group or other permission bits is refused with a chmod hint."""
    path = tmp_path / "keys.json"
    write_key_file(path, RING)
    path.chmod(0o644)
    with pytest.raises(CryptoError, match="chmod 600") as info:
        load_key_ring(None, path)
    assert not leaks(info.value, RING.primary)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not valid JSON"),
        ('{"keys": "x"}', "expected"),
        ('{"keys": [1]}', "keys[0]"),
        ('{"keys": [{"id": "k1", "key": "AAAA"}]}', "keys[0]"),
        ('{"keys": [{"id": "k1", "key": 5}]}', "keys[0]"),
        ('{"keys": [{"key": "AAAA"}]}', "keys[0]"),
        ('{"primary": 3, "keys": [{"id": "k1", "key": "%s"}]}', "primary"),
        ('{"primary": "k9", "keys": [{"id": "k1", "key": "%s"}]}', "k9"),
    ],
)
def test_key_file_malformed(tmp_path: Path, content: str, expected: str) -> None:
    """A malformed key file raises CryptoError naming the bad part, not the key."""
    path = tmp_path / "keys.json"
    if "%s" in content:
        content %= b64(RING.primary)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    with pytest.raises(CryptoError, match=expected.replace("[", r"\[")) as info:
        load_key_ring(None, path)
    assert not leaks(info.value, RING.primary)


def test_key_file_without_keys_is_missing(tmp_path: Path) -> None:
    """A key file with an empty key list counts as no master key."""
    path = tmp_path / "keys.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('{"keys": []}')
    with pytest.raises(MissingMasterKey):
        load_key_ring(None, path)


def test_create_key_file(tmp_path: Path) -> None:
    """create_key_file writes one fresh key (creating the directory) and refuses to overwrite."""
    path = tmp_path / "conf" / "keys.json"
    ring = create_key_file(path)
    assert len(ring.key_ids()) == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0
    before = path.read_bytes()
    with pytest.raises(CryptoError, match="already exists"):
        create_key_file(path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["keys.json"]


def test_atomic_write_keeps_original_on_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash before the rename leaves the old key file intact and no temporary file behind."""
    path = tmp_path / "keys.json"
    write_key_file(path, RING)
    before = path.read_bytes()
    new_ring, _ = rotation_plan(RING)

    def crash(src: str | Path, dst: str | Path) -> None:
        raise OSError(5, "simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CryptoError, match="cannot write key file") as info:
        write_key_file(path, new_ring)
    assert not leaks(info.value, *[new_ring.primary, RING.primary])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_key_ring(None, path).key_ids() == ("k1",)
    assert os.listdir(tmp_path) == ["keys.json"]


def test_rotation_end_to_end(tmp_path: Path) -> None:
    """Rotation via the key file: mixed rows stay readable, then the old key can be dropped."""
    path = tmp_path / "keys.json"
    ring = create_key_file(path)
    rows = {
        f"conn_{i}": ring.seal(f"secret-{i}", SecretBinding("org", f"conn_{i}", "k"))
        for i in range(4)
    }
    new_ring, new_key = rotation_plan(ring)
    write_key_file(path, new_ring)
    ring = load_key_ring(None, path)
    # A crash half-way: two rows moved, two not; everything still opens.
    for conn in ("conn_0", "conn_1"):
        rows[conn] = ring.reseal(rows[conn], SecretBinding("org", conn, "k"))
    assert {r.key_id for r in rows.values()} == {new_key.key_id, ring.key_ids()[1]}
    for conn, sealed in rows.items():
        assert ring.open(sealed, SecretBinding("org", conn, "k")) == f"secret-{conn[5:]}"
    for conn, sealed in list(rows.items()):
        rows[conn] = ring.reseal(sealed, SecretBinding("org", conn, "k"))
    final = ring.without(ring.key_ids()[1])
    write_key_file(path, final)
    final = load_key_ring(None, path)
    assert final.key_ids() == (new_key.key_id,)
    for conn, sealed in rows.items():
        assert final.open(sealed, SecretBinding("org", conn, "k")) == f"secret-{conn[5:]}"


def test_seal_refuses_lone_surrogate() -> None:
    """A str that is not encodable as UTF-8 is refused without quoting it."""
    with pytest.raises(CryptoError) as info:
        RING.seal("abc\ud800", BINDING)
    assert "\ud800" not in str(info.value)


@given(st.text())
def test_any_text_round_trips(plaintext: str) -> None:
    """Any str plaintext round-trips through seal, the text form and open."""
    text = RING.seal(plaintext, BINDING).to_text()
    assert RING.open(Sealed.from_text(text), BINDING) == plaintext
