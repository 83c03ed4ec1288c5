"""The JavaScript verifier (tools/verify-evidence.js), written from docs/evidence-format.md alone, gives every
test vector its expected verdict and ids, under Node and in real Chromium; its strict reader and canonical
bytes agree with an RFC 8785 writer written here apart from it."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import string
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.browser import open_tab
from tests.ports import free_port

ROOT = Path(__file__).parent.parent
VERIFIER = ROOT / "tools" / "verify-evidence.js"
#: The vectors; EVIDENCE_VECTORS points elsewhere (a checkout where they are being written).
VECTORS = Path(os.environ.get("EVIDENCE_VECTORS", ROOT / "tests" / "vectors" / "evidence"))
MAX_SAFE = 2**53 - 1


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("the JavaScript verifier's tests need node (Debian's nodejs; ./dev test installs it)")
    return found


def manifest() -> dict:
    return json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))


def vector_names() -> list[str]:
    """Every vector the manifest lists; a missing manifest is one case that fails, never a skip."""
    try:
        return [entry["file"] for entry in manifest()["vectors"]]
    except (OSError, ValueError, KeyError) as error:
        return [f"(no manifest: {error})"]


def expected(name: str) -> dict:
    entries = [entry for entry in manifest()["vectors"] if entry["file"] == name]
    assert len(entries) == 1, f"{name} is listed {len(entries)} times in the manifest"
    return entries[0]


def run_node(name: str, *, register: bool) -> tuple[int, dict]:
    arguments = [node(), str(VERIFIER), str(VECTORS / name), "--bank-key", str(VECTORS / "bank.pub"), "--json"]
    if register:
        arguments += ["--register", str(VECTORS / manifest()["register"])]
    result = subprocess.run(arguments, capture_output=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr.decode()
    return result.returncode, json.loads(result.stdout)


def check_verdict(name: str, result: dict, *, register: bool) -> None:
    """The manifest's verdict (with or without the register copy), its ids for a file that verifies, and
    for one that fails, the kind of check that caught it. Version 1 files are refused, saying where to
    check them."""
    entry = expected(name)
    if entry["version"] == 1:
        assert result == {"ok": False, "failure": "version 1: check with collector verify", "check": "version"}
        return
    verdict = entry["verdict"] if register else entry["verdict_without_register"]
    if verdict == "OK":
        assert result["ok"], f"{name}: {result.get('failure')}"
        if entry["verdict"] == "OK":
            ids = (result["canonical_sha256"], result["evidence_id"], result["days_id"])
            assert ids == (entry["sha256"], entry["evidence_id"], entry["days_id"]), name
        assert result["mirror"] is register
    else:
        assert verdict == "FAIL"
        assert not result["ok"], f"{name} ({entry['reason']['text']}) verifies"
        assert result["check"] == entry["check"], (name, result["failure"])


@pytest.mark.parametrize("register", [True, False], ids=["register", "alone"])
@pytest.mark.parametrize("name", vector_names())
def test_every_vector_gets_its_verdict_under_node(name, register):
    code, result = run_node(name, register=register)
    check_verdict(name, result, register=register)
    assert code == (0 if result["ok"] else 1)


def test_the_command_says_ok_or_failed_in_words(tmp_path):
    bank = str(VECTORS / "bank.pub")
    shown = subprocess.run([node(), str(VERIFIER), str(VECTORS / "ok-overnight.json"), "--bank-key", bank],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith(f"{VECTORS / 'ok-overnight.json'}: OK")
    assert "proved:" in shown.stdout and "trusted (the bank's word):" in shown.stdout
    assert "the gate keys (no register mirror given)" in shown.stdout
    changed = tmp_path / "changed.json"
    changed.write_bytes((VECTORS / "ok-overnight.json").read_bytes().replace(b'"version"', b'"version":2,"version"', 1))
    failed = subprocess.run([node(), str(VERIFIER), str(changed), "--bank-key", bank], capture_output=True,
                            text=True, timeout=120)
    assert failed.returncode == 1 and "FAILED: " in failed.stdout and "twice" in failed.stdout, failed.stdout
    usage = subprocess.run([node(), str(VERIFIER), str(changed)], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "--bank-key" in usage.stderr


# In the browser: the same module, imported by a page, with nothing but WebCrypto, TextDecoder and Intl.

BROWSER_RUN = """
const [names, keyFile, registerFile, done] = arguments;
(async () => {
  const verifier = await import("/verify-evidence.js");
  const get = async (path) => new Uint8Array(await (await fetch(path)).arrayBuffer());
  const key = new TextDecoder().decode(await get(keyFile));
  const out = {};
  for (const name of names) {
    out[name] = {
      register: await verifier.verifyEvidence(await get(name), [key], await get(registerFile)),
      alone: await verifier.verifyEvidence(await get(name), [key]),
    };
  }
  return out;
})().then(done, (error) => done({error: String(error && error.stack || error)}));
"""


@pytest.fixture
def served(tmp_path):
    """The module and the vectors over HTTP on loopback (a module import needs http:, and WebCrypto a
    secure context, which 127.0.0.1 is)."""
    shutil.copy(VERIFIER, tmp_path / "verify-evidence.js")
    shutil.copytree(VECTORS, tmp_path / "vectors")
    (tmp_path / "index.html").write_text("<!doctype html><title>verify</title>", encoding="utf-8")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript"}

    def log_message(self, *args):
        pass


def test_chromium_gives_the_same_verdicts(served):
    names = vector_names()
    driver = open_tab(size="1280,900")
    try:
        driver.get(f"{served}/index.html")
        driver.set_script_timeout(120)
        results = driver.execute_async_script(BROWSER_RUN, [f"/vectors/{name}" for name in names], "/vectors/bank.pub",
                                              f"/vectors/{manifest()['register']}")
    finally:
        driver.quit()
    assert "error" not in results, results.get("error")
    for name in names:
        check_verdict(name, results[f"/vectors/{name}"]["register"], register=True)
        check_verdict(name, results[f"/vectors/{name}"]["alone"], register=False)


# The strict reader and the canonical bytes, against an RFC 8785 writer written here.

HARNESS = """
const { readStrict, canonicalText } = await import(process.env.VERIFIER_MODULE);
const { createInterface } = await import("node:readline");
for await (const line of createInterface({ input: process.stdin })) {
  let answer;
  try {
    answer = { canonical: canonicalText(readStrict(Buffer.from(line, "base64"))) };
  } catch (error) {
    answer = { refused: error.message };
  }
  process.stdout.write(JSON.stringify(answer) + "\\n");
}
"""


@pytest.fixture(scope="module")
def reader():
    """One node process that reads base64 lines and answers the canonical text of each, or why it refused."""
    process = subprocess.Popen([node(), "--input-type=module", "-e", HARNESS], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env={**os.environ, "VERIFIER_MODULE": VERIFIER.as_uri()},
                               text=True)

    def ask(data: bytes) -> dict:
        import base64

        process.stdin.write(base64.b64encode(data).decode() + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    yield ask
    process.stdin.close()
    process.wait(timeout=30)


def canonical(value) -> str:
    """RFC 8785 for values without fractions: names sorted by UTF-16 code units, strings as JSON writes them
    with no escape but the required ones."""
    if isinstance(value, dict):
        names = sorted(value, key=lambda name: name.encode("utf-16-be"))
        return "{" + ",".join(f"{canonical(name)}:{canonical(value[name])}" for name in names) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
values = st.recursive(st.none() | st.booleans() | st.integers(-MAX_SAFE, MAX_SAFE) | texts,
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                      max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(value=values, ascii_only=st.booleans(), indent=st.sampled_from([None, 0, 2]), reverse=st.booleans())
def test_canonical_bytes_of_any_value_however_written(reader, value, ascii_only, indent, reverse):
    def reorder(v):
        if isinstance(v, dict):
            return {name: reorder(v[name]) for name in sorted(v, reverse=reverse)}
        return [reorder(item) for item in v] if isinstance(v, list) else v

    written = json.dumps(reorder(value), ensure_ascii=ascii_only, indent=indent).encode()
    assert reader(written) == {"canonical": canonical(value)}


@settings(max_examples=100, deadline=None)
@given(value=st.dictionaries(texts, values, min_size=1, max_size=4), data=st.data())
def test_a_name_twice_is_refused(reader, value, data):
    name = data.draw(st.sampled_from(sorted(value)))
    written = json.dumps(value)[:-1] + f",{json.dumps(name)}:null}}"
    assert "twice" in reader(written.encode())["refused"]


@settings(max_examples=100, deadline=None)
@given(number=st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                        st.integers(MAX_SAFE + 1, 2**70).map(str), st.integers(-(2**70), -MAX_SAFE - 1).map(str),
                        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e3", "1E+3", "16.0", "-0.0"])))
def test_no_fraction_exponent_or_unsafe_integer_is_read(reader, number):
    assert "refused" in reader(f'{{"n":[1,{number}]}}'.encode())


@pytest.mark.parametrize("written", [b'\xef\xbb\xbf{"a":1}', b'{"a":"\xff"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00x"}',
                                     b'{"a":1} x', b'{"a":1}{}', b'{"a":"\x01"}', b"{'a':1}", b'{"a":01}', b""])
def test_what_json_readers_disagree_on_is_refused(reader, written):
    assert "refused" in reader(written)


# Any file a bank could sign: edited vectors, signed again, are OK or FAILED, never a crash; an edited punch
# or day always fails.

VERIFY_HARNESS = """
const { verifyEvidence } = await import(process.env.VERIFIER_MODULE);
const { createInterface } = await import("node:readline");
for await (const line of createInterface({ input: process.stdin })) {
  const { file, keys } = JSON.parse(line);
  let answer;
  try {
    const result = await verifyEvidence(Buffer.from(file, "base64"), keys);
    answer = { ok: result.ok, failure: result.failure ?? null, check: result.check ?? null };
  } catch (error) {
    answer = { crash: String(error && error.stack || error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\\n");
}
"""


@pytest.fixture(scope="module")
def signed_verifier():
    """One node process verifying files a fresh bank key signed, and the signer."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    bank = Ed25519PrivateKey.generate()
    raw = bank.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    text = "ed25519:" + base64.b64encode(raw).decode()
    key_id = hashlib.sha256(raw).hexdigest()[:16]
    keys = [(VECTORS / "bank.pub").read_text(encoding="utf-8"), text]
    process = subprocess.Popen([node(), "--input-type=module", "-e", VERIFY_HARNESS], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env={**os.environ, "VERIFIER_MODULE": VERIFIER.as_uri()},
                               text=True)

    def verify(document: dict) -> dict:
        document = {**document, "bank_key": text, "key": key_id}
        document.pop("sig", None)
        document["sig"] = bank.sign(canonical(document).encode()).hex()
        line = json.dumps({"file": base64.b64encode(json.dumps(document).encode()).decode(), "keys": keys})
        process.stdin.write(line + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    yield verify
    process.stdin.close()
    process.wait(timeout=30)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for name, item in value.items():
            yield from paths(item, (*prefix, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def ok_vectors() -> list[str]:
    try:
        return sorted(entry["file"] for entry in manifest()["vectors"]
                      if entry["verdict"] == "OK" and entry["version"] == 2)
    except (OSError, ValueError, KeyError):
        return ["(no manifest)"]


replacements = st.one_of(st.none(), st.booleans(), st.integers(-MAX_SAFE, MAX_SAFE), texts,
                         st.sampled_from(["in", "out", "toggle", "2026-10-08T00:00:00.000Z", "2026-10-08",
                                          "0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z", "card_forged",
                                          "manual#1", "north#1", "S1", "Etc/GMT+14"]),
                         st.just([]), st.just({}))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(ok_vectors()), count=st.integers(1, 3), data=st.data())
def test_whatever_a_bank_signs_verifies_or_fails_never_crashes(signed_verifier, name, count, data):
    original = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    document = json.loads(json.dumps(original))
    for _ in range(count):
        candidates = [path for path in paths(document) if path and path[0] not in ("bank_key", "key", "sig")]
        *parents, last = data.draw(st.sampled_from(candidates), label="where")
        parent = document
        for step in parents:
            parent = parent[step]
        if data.draw(st.booleans(), label="remove"):
            del parent[last]
        else:
            parent[last] = data.draw(replacements, label="value")
    answer = signed_verifier(document)
    assert "crash" not in answer, answer["crash"]
    # Compared as canonical text: in Python True == 1.
    rest = canonical({k: v for k, v in document.items() if k not in ("bank_key", "key", "sig", "days")})
    if rest == canonical({k: v for k, v in original.items() if k not in ("bank_key", "key", "sig", "days")}):
        # Only the days changed: they verify exactly when they are the same but for the bank's flags.
        same = canonical(without_bank_flags(document.get("days"))) == canonical(without_bank_flags(original["days"]))
        assert answer["ok"] == same, answer
    signed = {canonical(punch) for punch in all_punches(original)}
    edited = all_punches(document)
    if edited is not None and any(canonical(punch) not in signed for punch in edited):
        assert not answer["ok"], "a punch edited after the gate signed it verifies"


BANK_FLAGS = {"not_assigned", "late_upload", "clock_future", "clock_backwards", "chain_break", "equivocated"}


def without_bank_flags(days):
    """The days with the bank's flags left out, as a verifier compares them (days of another shape as they are)."""
    if not isinstance(days, list) or not all(isinstance(day, dict) and isinstance(day.get("flags"), list)
                                             and all(isinstance(flag, str) for flag in day["flags"]) for day in days):
        return days
    return [{**day, "flags": [flag for flag in day["flags"] if flag not in BANK_FLAGS]} for day in days]


def all_punches(document):
    """Every punch of every chain, or None when the edit broke the structure (a FAIL of its own)."""
    try:
        return [punch for gate in document["gates"] for chain in gate["chains"] for punch in chain["punches"]]
    except (KeyError, TypeError):
        return None


ids = st.text(alphabet=string.ascii_letters + string.digits + "-:/", min_size=1, max_size=64)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(ok_vectors()), data=st.data(),
       change=st.one_of(st.tuples(st.just("mono_ms"), st.integers(0, MAX_SAFE)), st.tuples(st.just("boot"), ids),
                        st.tuples(st.just("reader"), ids),
                        st.tuples(st.just("roster"), st.sampled_from(["known", "unknown", "none"])),
                        st.tuples(st.just("tech"), st.sampled_from(["iso14443a", "iso14443b", "felica"]))))
def test_a_punch_changed_where_the_days_cannot_see_it_fails(signed_verifier, name, data, change):
    document = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    punches = all_punches(document)
    punch = data.draw(st.sampled_from(punches), label="punch")
    member, value = change
    assume(punch[member] != value)
    punch[member] = value
    answer = signed_verifier(document)
    assert not answer["ok"] and answer["check"] == "signature", answer
