use super::*;

#[test]
fn spki_hash_is_of_the_certificates_key() {
    let ca = TestCa::new("t").unwrap();
    let cert = ca.issue(&["127.0.0.1"]).unwrap();
    let key = rcgen::KeyPair::try_from(cert.key_der.as_slice()).unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    // The SPKI is embedded verbatim in the certificate.
    assert!(cert
        .cert_der
        .windows(spki.len())
        .any(|w| w == spki.as_slice()));
    assert_eq!(spki_sha256_base64(&cert).unwrap().len(), 44);
}

#[test]
fn page_urls_carry_the_link_percent_encoded() {
    let u = page_url(
        "http://127.0.0.1:1/",
        "wss://127.0.0.1:2/console?token=a.b-c.d_e",
    );
    assert_eq!(
        u,
        "http://127.0.0.1:1/?link=wss%3A%2F%2F127.0.0.1%3A2%2Fconsole%3Ftoken%3Da.b-c.d_e"
    );
}

#[test]
fn tampering_changes_only_the_signature() {
    let link = "wss://h/console?token=aaa.bbb.0123456789abcdefghij";
    let t = tamper_signature(link).unwrap();
    assert_ne!(t, link);
    assert_eq!(t.len(), link.len());
    assert!(t.starts_with("wss://h/console?token=aaa.bbb."));
}
