from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaiwo.devcluster.pki import PKI


def test_certificates_are_signed_by_the_ca_and_reused(tmp_path: Path) -> None:
    pki = PKI(tmp_path)
    server = pki.issue("apiserver", "kube-apiserver", server=True, ips=("127.0.0.1",), dns=("localhost",))
    admin = pki.issue("admin", "admin", org="system:masters", client=True)
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    pub = ca.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    for pair in (server, admin):
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert pair.key.stat().st_mode & 0o077 == 0
    admin_cert = x509.load_pem_x509_certificate(admin.cert.read_bytes())
    assert admin_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    san = (
        x509.load_pem_x509_certificate(server.cert.read_bytes())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    before = server.cert.read_bytes()
    again = PKI(tmp_path).issue("apiserver", "kube-apiserver", server=True)
    assert again.cert.read_bytes() == before  # kubeconfigs handed out earlier stay valid
    assert pki.service_account_keys().key.exists()
