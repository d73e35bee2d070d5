"""A throw-away certificate authority and HTTPS listener certificate for the test double.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``).
Windows VMs on clouds serve WinRM over HTTPS with a certificate nobody's default trust
store knows (Azure, GCE generate them); the tests reproduce that with a CA made here,
which a client trusts only when given it explicitly (``--ca-cert``).

Client certificates for WinRM's certificate authentication (:func:`make_client_cert`)
carry the account's UPN in the subject alternative name, as Windows requires for its
``WSMan:\\localhost\\ClientCertificate`` mappings, and the clientAuth usage.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA a client must trust, and the listener's certificate and key."""

    ca_cert: Path
    cert: Path
    key: Path
    ca_key: Path | None = None  # to sign client certificates (make_client_cert)


@dataclass(frozen=True)
class ClientCert:
    """PEM files of a client certificate and its key, and the UPN it names."""

    cert: Path
    key: Path
    upn: str


# Microsoft's UPN otherName (szOID_NT_PRINCIPAL_NAME) in the subject alternative name.
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tls_files(directory: Path, *, ip: str = "127.0.0.1") -> TlsFiles:
    """Write a CA and a server certificate for ``ip`` and ``localhost`` into ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("imageprep test CA"))
        .issuer_name(_name("imageprep test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("WIN-IMAGEPREP"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        directory / "ca.pem",
        directory / "listener.pem",
        directory / "listener.key",
        directory / "ca.key",
    )
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    assert files.ca_key is not None
    _write_key(files.ca_key, ca_key)
    return files


def make_client_cert(tls: TlsFiles, directory: Path, upn: str) -> ClientCert:
    """A client certificate for ``upn`` (``user@host``) signed by ``tls``'s CA."""
    assert tls.ca_key is not None, "make_tls_files keeps the CA key"
    ca_key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    upn_der = b"\x0c" + bytes([len(upn.encode())]) + upn.encode()  # DER UTF8String (< 128 B)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(upn.partition("@")[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.OtherName(UPN_OID, upn_der)]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    stem = upn.replace("@", "_at_")
    files = ClientCert(directory / f"{stem}.pem", directory / f"{stem}.key", upn)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(files.key, key)
    return files


def client_cert_upn(der: bytes) -> str | None:
    """The UPN a DER client certificate names in its subject alternative name, if any."""
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for other in names.get_values_for_type(x509.OtherName):
        if other.type_id == UPN_OID and other.value[:1] == b"\x0c":
            return other.value[2 : 2 + other.value[1]].decode("utf-8", "replace")
    return None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
