"""TlsCertBot against a TLS server on 127.0.0.1 with a CA the test creates.

`openssl` makes a throw-away CA and a leaf for 127.0.0.1; the bot trusts the
CA through its `ca_pem` parameter. No sandbox here (see test_fetch.py).
"""

import hashlib
import socket
import ssl
import subprocess
import sys
import threading

import pytest

from conftest import Table


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=Bots Test CA/O=mcp-multiplayer tests", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
            "-subj", "/CN=localhost/O=Leaf Org", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "1", "-extfile", "ext.cnf", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_server(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "leaf.pem", pki / "leaf.key")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, addr = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()


def der_sha256(pem_path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem_path.read_text())).hexdigest()


def test_verified_leaf_fingerprint_subject_issuer_validity(pki, tls_server):
    t = Table("tlscert", ["alice"], params={"ca_pem": (pki / "ca.pem").read_text()}, network=True)
    t.init()
    posts = t.say("alice", f"cert 127.0.0.1:{tls_server}")
    assert [p["type"] for p in posts] == ["tls_cert"], posts
    r = posts[0]["body"]
    assert r["verified"] is True
    assert r["sha256"] == der_sha256(pki / "leaf.pem")
    assert r["subject"] == "CN=localhost, O=Leaf Org"
    assert r["issuer"] == "CN=Bots Test CA, O=mcp-multiplayer tests"
    assert "IP Address:127.0.0.1" in r["subject_alt_names"]
    assert r["not_after"].endswith("GMT") and r["not_after_utc"] > r["not_before_utc"]
    # Be truthful about the chain: present only where the interpreter can report it.
    has_chain = sys.version_info >= (3, 13)
    assert r["chain_available"] is has_chain
    if has_chain:
        assert r["chain_sha256"][0] == r["sha256"]


def test_untrusted_certificate_is_reported_unverified(pki, tls_server):
    t = Table("tlscert", ["alice"], network=True)
    t.init()
    posts = t.say("alice", {"host": "127.0.0.1", "port": tls_server})
    assert [p["type"] for p in posts] == ["tls_error"]
    r = posts[0]["body"]
    assert r["verified"] is False and "verification failed" in r["error"]
    assert r["unverified_leaf_sha256"] == der_sha256(pki / "leaf.pem")
    assert "subject" not in r


def test_host_name_forms(pki, tls_server):
    t = Table("tlscert", ["alice"], params={"ca_pem": (pki / "ca.pem").read_text()}, network=True)
    t.init()
    by_name = t.say("alice", f"https://localhost:{tls_server}/")[0]
    assert by_name["type"] == "tls_cert" and by_name["body"]["host"] == "localhost"
    assert by_name["body"]["sha256"] == der_sha256(pki / "leaf.pem")
    # a name that does not resolve is an error post, not a crash
    failed = t.say("alice", {"host": "no-such-host.invalid", "port": tls_server})[0]
    assert failed["type"] == "tls_error" and "error" in failed["body"]


def test_chatter_is_ignored():
    t = Table("tlscert", ["alice"], network=True)
    t.init()
    assert t.say("alice", "ok.") == []
    assert t.say("alice", "hello there") == []
