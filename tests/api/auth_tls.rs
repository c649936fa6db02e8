//! TLS and mutual TLS: a client certificate's subject is the caller's identity; callers without
//! one may still bring a bearer token; plaintext is refused.

use tenant_plane::proto::{CreateTenantRequest, ListTenantsRequest};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::support::{ADMIN_TOKEN, Conn, Db, TenantServiceClient, TestServer, new_tenant};

/// A certificate authority, and certificates it signs, as PEM.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tenant-plane test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            dir: tempfile::tempdir().expect("dir"),
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `common_name` (and the host names `sans`): (cert PEM, key PEM).
    fn issue(&self, common_name: &str, sans: &[&str], client: bool) -> (String, String) {
        let names: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, name: &str, pem: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    }
}

async fn connect(server: &TestServer, pki: &Pki, client: Option<&(String, String)>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .expect("TLS handshake")
}

fn client(channel: Channel, token: Option<&str>) -> TenantServiceClient<Conn> {
    TenantServiceClient::new(match token {
        Some(token) => crate::support::with_token(channel, token),
        None => tonic::service::interceptor::InterceptedService::new(
            channel,
            tenant_plane_client::BearerToken::default(),
        ),
    })
}

fn create(slug: &str) -> CreateTenantRequest {
    CreateTenantRequest {
        tenant: Some(new_tenant(slug)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_identities_and_plaintext_is_refused() {
    let pki = Pki::new();
    let (server_cert, server_key) = pki.issue("tenant-plane", &["localhost"], false);
    let (cert_path, key_path) = (
        pki.write("server.pem", &server_cert),
        pki.write("server.key", &server_key),
    );
    let ca_path = pki.write("ca.pem", &pki.ca_pem);
    let server = TestServer::start_with(Db::Sqlite, |config| {
        config.auth.tls_cert = Some(cert_path);
        config.auth.tls_key = Some(key_path);
        config.auth.tls_client_ca = Some(ca_path);
        config.auth.tls_admin_subjects = vec!["CN=ops".into()];
    })
    .await;

    // A service certificate reads, and may not create.
    let billing = pki.issue("billing", &[], true);
    let mut as_billing = client(connect(&server, &pki, Some(&billing)).await, None);
    as_billing
        .list_tenants(ListTenantsRequest::default())
        .await
        .expect("the service role lists tenants");
    let denied = as_billing.create_tenant(create("acme")).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("service role"), "{denied:?}");

    // An admin subject creates.
    let ops = pki.issue("ops", &[], true);
    let mut as_ops = client(connect(&server, &pki, Some(&ops)).await, None);
    as_ops
        .create_tenant(create("acme"))
        .await
        .expect("the admin subject creates");

    // No certificate: a bearer token still works, and nothing at all is refused.
    let bare = connect(&server, &pki, None).await;
    client(bare.clone(), Some(ADMIN_TOKEN))
        .create_tenant(create("globex"))
        .await
        .expect("a token over TLS");
    let missing = client(bare, None)
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);

    // A certificate from another authority is refused at the handshake.
    let stranger = Pki::new().issue("ops", &[], true);
    let refused = async {
        let channel = connect_raw(&server, &pki, &stranger).await?;
        client(channel, None)
            .list_tenants(ListTenantsRequest::default())
            .await
            .map_err(|e| e.to_string())
    };
    assert!(refused.await.is_err(), "an unknown CA's certificate");

    // Plaintext gets no answer from a TLS server.
    let plaintext = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port()))
        .expect("uri")
        .connect()
        .await;
    if let Ok(channel) = plaintext {
        let answer = client(channel, Some(ADMIN_TOKEN))
            .list_tenants(ListTenantsRequest::default())
            .await;
        assert!(answer.is_err(), "plaintext is not served: {answer:?}");
    }
    server.stop().await;
}

/// Like [`connect`], returning the handshake's failure instead of panicking.
async fn connect_raw(
    server: &TestServer,
    pki: &Pki,
    (cert, key): &(String, String),
) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(cert, key));
    Channel::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}
