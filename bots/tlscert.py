"""TlsCertBot: reports the TLS certificate a host presents, as one shared observation.

Send "cert example.com" (or "example.com:8443", or {"host": "example.com",
"port": 443}). The bot opens a TCP connection, performs a TLS handshake with
certificate and hostname verification against the system trust store (plus
`ca_pem` if given), and posts for the leaf certificate: the SHA-256 fingerprint
of its DER bytes, subject, issuer, subject alternative names, serial number,
notBefore/notAfter (as printed by OpenSSL and as ISO 8601 UTC), plus the
negotiated TLS version and cipher.

Chain: Python 3.13 added `SSLSocket.get_verified_chain()`; when the interpreter
has it, the bot also posts the SHA-256 fingerprint of every certificate in the
verified chain. On older interpreters (Debian 12 ships 3.11) only the leaf is
reported, and the post says so (`chain_available: false`).

When verification fails, the bot says why and (unless `report_unverified` is
false) connects once more without verification to report the leaf's
fingerprint only: without verification Python does not decode the
certificate, so subject and issuer are then unknown.

Needs the channel's network permission; the sandbox only lets it reach ports
80 and 443 of public addresses.
"""

import datetime
import hashlib
import re
import socket
import ssl

MANIFEST = {
    "name": "TlsCertBot",
    "version": "1.0.0",
    "summary": "Connects to host:443 and posts the certificate's SHA-256 fingerprint, subject, issuer and validity (needs allow_network).",
    "params": {
        "port": "default port when the message names none (default 443)",
        "timeout": "seconds for each socket operation of a connection, at most 2 (default 2); the bot makes at most two connections and the hook has 5 s",
        "ca_pem": "extra trusted CA certificates, PEM text (default none: system store only)",
        "report_unverified": "on a verification failure, still report the leaf fingerprint (default true)",
    },
}

HOST_RE = re.compile(r"^(?:cert\s+|tls\s+|check\s+)?(?:https?://)?([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?/?\s*$", re.IGNORECASE)


def requested_target(body, default_port):
    """(host, port) a message asks about, or None."""
    if isinstance(body, dict):
        host = body.get("host")
        if not isinstance(host, str):
            text = body.get("text")
            return requested_target(text, default_port) if isinstance(text, str) else None
        port = body.get("port", default_port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            return None
        return host.strip(), port
    if not isinstance(body, str):
        return None
    match = HOST_RE.match(body.strip())
    if not match:
        return None
    name = match.group(1)
    if not (name == "localhost" or name.startswith("[") or re.search(r"[A-Za-z0-9]\.[A-Za-z0-9]", name)):
        return None
    port = int(match.group(2)) if match.group(2) else default_port
    if not 0 < port < 65536:
        return None
    return match.group(1).strip("[]"), port


def name_string(rdns):
    """OpenSSL-style "CN=example.com, O=Example" from getpeercert()'s nested tuples."""
    parts = []
    for rdn in rdns or ():
        for pair in rdn:
            key, value = pair[0], pair[1]
            short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                     "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L"}.get(key, key)
            parts.append(f"{short}={value}")
    return ", ".join(parts)


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
OPENSSL_TIME_RE = re.compile(r"^([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})\s+GMT$")


def iso_time(openssl_time):
    """"Jan  5 09:00:00 2027 GMT" (OpenSSL's form, always GMT) as ISO 8601, or None."""
    match = OPENSSL_TIME_RE.match(openssl_time or "")
    if not match or match.group(1) not in MONTHS:
        return None
    month = MONTHS.index(match.group(1)) + 1
    day, hour, minute, second, year = (int(match.group(i)) for i in (2, 3, 4, 5, 6))
    moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def handshake(host, port, timeout, context):
    """Connect, shake hands, return what the peer presented."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            leaf = tls.getpeercert(binary_form=True)
            decoded = tls.getpeercert()
            try:
                chain = tls.get_verified_chain()
            except AttributeError:
                chain = None
            return leaf, decoded, chain, tls.version(), tls.cipher()


class TlsCertBot:
    def __init__(self, ctx, params):
        # A fresh instance per hook: nothing kept here outlives the hook.
        self.ctx = ctx
        self.params = params if isinstance(params, dict) else {}

    def on_message(self, msg):
        params = self.params
        default_port = params.get("port", 443)
        if isinstance(default_port, bool) or not isinstance(default_port, int):
            default_port = 443
        target = requested_target(msg.get("body"), default_port)
        if target is None:
            return
        host, port = target
        timeout = params.get("timeout", 2)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            timeout = 2
        timeout = min(max(timeout, 0.1), 2)
        result = {"host": host, "port": port, "requested_by": msg.get("sender"), "request_seq": msg.get("seq")}

        context = ssl.create_default_context()
        if isinstance(params.get("ca_pem"), str) and params.get("ca_pem").strip():
            try:
                context.load_verify_locations(cadata=params.get("ca_pem"))
            except (ssl.SSLError, ValueError) as exc:
                result["error"] = f"bad ca_pem parameter: {exc}"
                self.ctx.post("tls_error", result)
                return
        try:
            leaf, decoded, chain, version, cipher = handshake(host, port, timeout, context)
        except ssl.SSLCertVerificationError as exc:
            result["verified"] = False
            result["error"] = f"certificate verification failed: {exc.verify_message or exc}"
            if params.get("report_unverified", True) is not False:
                self.report_unverified(host, port, timeout, result)
            self.ctx.post("tls_error", result)
            return
        except (OSError, ssl.SSLError, ValueError) as exc:
            result["error"] = repr(exc)[:300]
            self.ctx.post("tls_error", result)
            return

        result.update({
            "verified": True,
            "sha256": hashlib.sha256(leaf).hexdigest(),
            "subject": name_string(decoded.get("subject")),
            "issuer": name_string(decoded.get("issuer")),
            "subject_alt_names": [f"{kind}:{value}" for kind, value in decoded.get("subjectAltName", ())],
            "serial_number": decoded.get("serialNumber"),
            "not_before": decoded.get("notBefore"),
            "not_after": decoded.get("notAfter"),
            "tls_version": version,
            "cipher": cipher[0] if cipher else None,
            "chain_available": chain is not None,
        })
        try:
            result["not_before_utc"] = iso_time(decoded.get("notBefore"))
            result["not_after_utc"] = iso_time(decoded.get("notAfter"))
        except ValueError:
            result["not_before_utc"] = result["not_after_utc"] = None
        if chain is not None:
            result["chain_sha256"] = [hashlib.sha256(der).hexdigest() for der in chain]
        self.ctx.post("tls_cert", result)

    def report_unverified(self, host, port, timeout, result):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            leaf, decoded, chain, version, cipher = handshake(host, port, timeout, context)
        except (OSError, ssl.SSLError, ValueError) as exc:
            result["unverified_error"] = repr(exc)[:300]
            return
        result["unverified_leaf_sha256"] = hashlib.sha256(leaf).hexdigest()
        result["tls_version"] = version
