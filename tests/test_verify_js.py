"""The JavaScript verifier (tools/verify-evidence.js), written from docs/evidence-format.md alone, gives every
test vector its expected verdict and ids, under Node and in real Chromium; its strict reader and canonical
bytes agree with an RFC 8785 writer written here apart from it."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
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
