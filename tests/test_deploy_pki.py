"""collector ca init, gate enroll and broker-config: the deployment PKI and the broker's ACL."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.deploy.pki import load_key, same_key
from gate_agent.protocol import key_id, parse_bank_keys
from tests.helpers import BANK_PUBLIC, cli, write_bank_key


def write_collector_config(directory: Path, pki: Path | None = None, port: int = 8883) -> Path:
    """A collector configuration; with ``pki`` its MQTT client identity is the PKI's collector certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (f'db = "{directory / "collector.sqlite3"}"\nsigning_key = "{write_bank_key(directory / "bank.key")}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n')
    if pki is not None:
        text += (f'tls_ca = "{pki / "ca.crt"}"\ntls_cert = "{pki / "collector.crt"}"\n'
                 f'tls_key = "{pki / "collector.key"}"\n')
    text += "[ingest]\ngap_wait_seconds = 1\nresend_interval_seconds = 3\nroster_interval_seconds = 0.5\n"
    path = directory / "collector.toml"
    path.write_text(text)
    return path


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def name_of(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def usages(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture
def pki(tmp_path) -> Path:
    directory = tmp_path / "pki"
    cli("collector", "ca", "init", "--dir", str(directory), "--host", "bank.example", "--host", "10.1.2.3")
    return directory


@pytest.fixture
def config(tmp_path, pki) -> Path:
    path = write_collector_config(tmp_path / "collector", pki)
    cli("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(path))
    cli("collector", "site", "add", "S2", "--timezone", "Asia/Kolkata", "--config", str(path))
    return path


def public_key(tmp_path: Path, name: str) -> str:
    return cli("gate-agent", "keygen", "--key-file", str(tmp_path / f"{name}.key")).stdout.strip().splitlines()[-1]


def enroll(config: Path, pki: Path, gate: str, site: str, key: str, out: Path, check: bool = True):
    return cli("collector", "gate", "enroll", gate, "--site", site, "--public-key", key, "--pki", str(pki),
               "--out", str(out), "--config", str(config), check=check)


def test_ca_init_writes_the_ca_the_broker_and_the_collector_with_private_keys_0600(pki):
    assert sorted(p.name for p in pki.iterdir()) == ["ca.crt", "ca.key", "collector.crt", "collector.key",
                                                      "server.crt", "server.key"]
    for key in ("ca.key", "server.key", "collector.key"):
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600
    ca = certificate(pki / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server, collector = certificate(pki / "server.crt"), certificate(pki / "collector.crt")
    for cert, key in ((ca, "ca.key"), (server, "server.key"), (collector, "collector.key")):
        cert.verify_directly_issued_by(ca)
        assert same_key(cert, load_key(pki / key))
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"localhost", "bank.example"}
    assert {str(a) for a in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert usages(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert name_of(collector) == "collector" and usages(collector) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ca_init_never_overwrites_and_refuses_a_bad_host(pki, tmp_path):
    before = digests(pki)
    again = cli("collector", "ca", "init", "--dir", str(pki), check=False)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
    assert digests(pki) == before
    bad = cli("collector", "ca", "init", "--dir", str(tmp_path / "other"), "--host", "bank example", check=False)
    assert bad.returncode == 1 and "neither an IP address nor a DNS name" in bad.stderr
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_gate_enroll_registers_the_gate_and_issues_a_certificate_named_after_it(tmp_path, pki, config):
    key = public_key(tmp_path, "north")
    result = enroll(config, pki, "north", "S1", key, tmp_path / "north-tls")
    assert "gate S1/north added" in result.stdout and "broker-config" in result.stdout
    gates = json.loads(cli("collector", "gates", "--json", "--config", str(config)).stdout)
    assert [(g["site"], g["gate"]) for g in gates] == [("S1", "north")]
    out = tmp_path / "north-tls"
    assert sorted(p.name for p in out.iterdir()) == ["bank.pub", "ca.crt", "gate-tls.crt", "gate-tls.key"]
    assert stat.S_IMODE((out / "gate-tls.key").stat().st_mode) == 0o600
    # The bank's public signing key, which the gate's bank_key names: the only key it obeys.
    assert parse_bank_keys((out / "bank.pub").read_text()).keys() == {key_id(BANK_PUBLIC)}
    assert (out / "ca.crt").read_bytes() == (pki / "ca.crt").read_bytes()
    cert = certificate(out / "gate-tls.crt")
    cert.verify_directly_issued_by(certificate(pki / "ca.crt"))
    assert name_of(cert) == "north" and usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert same_key(cert, load_key(out / "gate-tls.key"))
    # Enrolling again with the same key (a lost TLS certificate, say) registers nothing new.
    again = enroll(config, pki, "north", "S1", key, tmp_path / "north-tls-2")
    assert "already registered with that key" in again.stdout


@pytest.mark.parametrize("case", ["reserved name", "id used at another site", "files exist", "no CA", "no site"])
def test_gate_enroll_refuses_with_one_line_and_leaves_nothing_behind(tmp_path, pki, config, case):
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    key = public_key(tmp_path, "other")
    gate, site, out, use_pki = "south", "S1", tmp_path / "out", pki
    expected = {"reserved name": "is reserved", "id used at another site": "already used at site S1",
                "files exist": "refusing to overwrite", "no CA": "lacks ca.crt, ca.key",
                "no site": "site S9 does not exist"}[case]
    if case == "reserved name":
        gate = "collector"
    elif case == "id used at another site":
        gate, site = "north", "S2"
    elif case == "files exist":
        out = tmp_path / "north-tls"
    elif case == "no CA":
        use_pki = tmp_path / "nowhere"
    else:
        site = "S9"
    before = digests(out) if out.exists() else None
    result = enroll(config, use_pki, gate, site, key, out, check=False)
    assert result.returncode == 1 and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    gates = json.loads(cli("collector", "gates", "--json", "--config", str(config)).stdout)
    assert [(g["site"], g["gate"]) for g in gates] == [("S1", "north")]
    assert (digests(out) if out.exists() else None) == before


def test_broker_config_admits_certificates_only_and_gives_each_active_gate_its_own_topics(tmp_path, pki, config):
    enroll(config, pki, "north", "S1", public_key(tmp_path, "north"), tmp_path / "north-tls")
    enroll(config, pki, "east", "S2", public_key(tmp_path, "east"), tmp_path / "east-tls")
    enroll(config, pki, "old", "S1", public_key(tmp_path, "old"), tmp_path / "old-tls")
    said = cli("collector", "gate", "deactivate", "old", "--site", "S1", "--config", str(config)).stdout
    # Until the access list is written again the broker still lets the gate publish: the command says so.
    assert "now run `collector broker-config` again and reload the broker" in said
    out = tmp_path / "broker" / "gate-attendance.conf"
    # No broker reads these files: pytest's private directory is closed to user mosquitto, so root is named.
    result = cli("collector", "broker-config", "--pki", str(pki), "--port", "8883", "--bind", "127.0.0.1",
                 "--out", str(out), "--broker-user", "root", "--config", str(config))
    assert "2 gate(s) with access, 1 deactivated" in result.stdout
    conf = out.read_text().splitlines()
    acl_path = out.with_suffix(".acl")
    # The broker reads copies beside its configuration, never the CA's folder.
    certs = out.parent / "certs" / "gate-attendance"
    for line in ("allow_anonymous false", f"acl_file {acl_path}", "listener 8883 127.0.0.1",
                 f"cafile {certs / 'ca.crt'}", f"certfile {certs / 'server.crt'}",
                 f"keyfile {certs / 'server.key'}", "require_certificate true",
                 "use_identity_as_username true", "use_username_as_clientid true"):
        assert line in conf
    # Listener options before the first listener would make Mosquitto open a default one on 1883.
    listener = conf.index("listener 8883 127.0.0.1")
    assert conf.index("use_username_as_clientid true") > listener and conf.index("require_certificate true") > listener
    blocks: dict[str, list[str]] = {}
    user = None
    for line in acl_path.read_text().splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            blocks[user] = []
        elif line.startswith(("topic ", "pattern ")):
            assert user is not None, "a topic line outside any user block would apply to everybody"
            blocks[user].append(line)
    assert set(blocks) == {"collector", "north", "east"}
    assert blocks["north"] == ["topic write attendance/v1/S1/north/punch", "topic write attendance/v1/S1/north/status",
                               "topic read attendance/v1/S1/north/ack", "topic read attendance/v1/S1/north/cmd",
                               "topic read attendance/v1/S1/roster"]
    assert blocks["east"][0] == "topic write attendance/v1/S2/east/punch"
    assert blocks["collector"] == ["topic read attendance/v1/+/+/punch", "topic read attendance/v1/+/+/status",
                                   "topic write attendance/v1/+/+/ack", "topic write attendance/v1/+/+/cmd",
                                   "topic write attendance/v1/+/roster"]


def test_broker_config_refuses_a_pki_without_the_brokers_files(tmp_path, config):
    result = cli("collector", "broker-config", "--pki", str(tmp_path), "--port", "8883",
                 "--out", str(tmp_path / "b.conf"), "--config", str(config), check=False)
    assert result.returncode == 1 and "lacks ca.crt, server.crt, server.key" in result.stderr
    assert not (tmp_path / "b.conf").exists()


def test_every_deployment_command_is_documented():
    from click.testing import CliRunner

    from collector.cli.root import main as collector
    from gate_agent.cli import main as gate_agent

    runner = CliRunner()
    for tool, path in ((collector, ["ca", "init"]), (collector, ["gate", "enroll"]), (collector, ["broker-config"]),
                       (collector, ["import"]), (collector, ["ack-file"]), (gate_agent, ["export"]),
                       (gate_agent, ["load-ack"])):
        result = runner.invoke(tool, [*path, "--help"])
        assert result.exit_code == 0, result.output
        usage, _, rest = result.output.partition("\n\n")
        assert rest.strip() and not rest.startswith("Options:"), f"{' '.join(path)} has no description"
    root = Path(__file__).parent.parent
    docs = "\n".join(path.read_text() for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    for command in ("collector ca init", "collector gate enroll", "collector broker-config", "collector import",
                    "collector ack-file", "gate-agent export", "gate-agent load-ack"):
        assert command in docs, f"neither README.md nor docs/ mention {command}"


def test_enrolling_into_the_gates_own_folder_leaves_its_signing_key_alone(tmp_path, pki, config):
    """The TLS pair is gate-tls.key/.crt: enrolled into the folder that holds the gate's signing key
    (gate.key, what `gate-agent keygen` writes), nothing of the signing key changes."""
    folder = tmp_path / "etc-gate-agent"
    folder.mkdir()
    key = cli("gate-agent", "keygen", "--key-file", str(folder / "gate.key")).stdout.strip().splitlines()[-1]
    before = (folder / "gate.key").read_bytes()
    enroll(config, pki, "south", "S1", key, folder)
    assert (folder / "gate.key").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["bank.pub", "ca.crt", "gate-tls.crt", "gate-tls.key", "gate.key"]


def test_gate_enroll_names_the_gate_as_its_site_calls_it(tmp_path, pki, config):
    key = public_key(tmp_path, "north")
    said = cli("collector", "gate", "enroll", "north", "--site", "S1", "--public-key", key, "--pki", str(pki),
               "--out", str(tmp_path / "north-tls"), "--display", "北门", "--json", "--config", str(config)).stdout
    assert json.loads(said)["display"] == "北门"
    gates = json.loads(cli("collector", "gates", "--json", "--config", str(config)).stdout)
    assert [(g["gate"], g["display"]) for g in gates] == [("north", "北门")]
    # A name that would hide what it says is refused before anything is registered or issued.
    refused = cli("collector", "gate", "enroll", "east", "--site", "S1", "--public-key", public_key(tmp_path, "east"),
                  "--pki", str(pki), "--out", str(tmp_path / "east-tls"), "--display", "东\u202e门",
                  "--config", str(config), check=False)
    assert refused.returncode == 1 and "the gate's display name holds an invisible" in refused.stderr
    assert not (tmp_path / "east-tls").exists()
    assert [g["gate"] for g in json.loads(cli("collector", "gates", "--json", "--config", str(config)).stdout)] == [
        "north"]
