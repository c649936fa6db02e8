//! ext_authz and the paths an application routes by: a tenant's key reaches only paths that
//! name its own tenant, however the path is spelt, and a path with more than one reading is
//! refused.

use crate::on_both;
use crate::support::{TestServer, create};

use super::{PERMISSION_DENIED, api_key, assert_allowed_as, assert_denied, check_http, http};

on_both!(
    a_key_reaches_no_other_tenant_path_however_it_is_spelt,
    a_key_reaches_its_own_tenant_path_however_it_is_spelt,
    paths_with_more_than_one_reading_are_refused,
);

/// gRPC INVALID_ARGUMENT.
const INVALID_ARGUMENT: i32 = 3;

/// `/tenants/acme/orders`, spelt as a client may spell it to an application that normalises.
const ACME_SPELLINGS: [&str; 14] = [
    "/tenants/acme/orders",
    "/tenants/%61cme/orders",
    "/tenants/%2561cme/orders",
    "/tenants/ACME/orders",
    "/TENANTS/Acme/orders",
    "/tenants/globex/../acme/orders",
    "/tenants/globex/%2e%2e/acme/orders",
    "/tenants/globex/..;/acme/orders",
    "/tenants/./acme/orders",
    "/orders/../tenants/acme",
    "/tenants/acme;v=1/orders",
    "/tenants/acme%3Bv=1/orders",
    "//tenants/acme/orders",
    "/tenants//acme/orders",
];

async fn a_key_reaches_no_other_tenant_path_however_it_is_spelt(server: &TestServer) {
    let acme = create(server, "acme").await;
    create(server, "globex").await;
    let (globex_key, _) = api_key(server, "tenants/globex").await;
    let key = [("x-api-key", globex_key.as_str())];

    let mut answers = Vec::new();
    for path in ACME_SPELLINGS {
        answers.push((
            path,
            check_http(server, http(&key, path, "localhost")).await,
        ));
    }
    let by_id = format!("/tenants/{}/orders", acme.id.to_uppercase());
    let acme_by_id = check_http(server, http(&key, &by_id, "localhost")).await;
    // A tenant that does not exist is still not the key's: the path is refused all the same.
    let nobody = check_http(server, http(&key, "/tenants/nobody/orders", "localhost")).await;

    for (path, answer) in &answers {
        println!("{path}");
        assert_denied(answer, PERMISSION_DENIED, 403, "TENANT_MISMATCH");
    }
    assert_denied(&acme_by_id, PERMISSION_DENIED, 403, "TENANT_MISMATCH");
    assert_denied(&nobody, PERMISSION_DENIED, 403, "TENANT_MISMATCH");
}

async fn a_key_reaches_its_own_tenant_path_however_it_is_spelt(server: &TestServer) {
    let acme = create(server, "acme").await;
    create(server, "globex").await;
    let (acme_key, _) = api_key(server, "tenants/acme").await;
    let key = [("x-api-key", acme_key.as_str())];

    let mut answers = Vec::new();
    for path in ACME_SPELLINGS {
        answers.push((
            path,
            check_http(server, http(&key, path, "localhost")).await,
        ));
    }
    let by_id = format!("/tenants/{}/orders", acme.id.to_uppercase());
    answers.push((
        "by id",
        check_http(server, http(&key, &by_id, "localhost")).await,
    ));
    answers.push((
        "/orders",
        check_http(server, http(&key, "/orders", "localhost")).await,
    ));

    for (path, answer) in &answers {
        println!("{path}");
        assert_allowed_as(answer, &acme);
    }
}

async fn paths_with_more_than_one_reading_are_refused(server: &TestServer) {
    create(server, "acme").await;
    let (acme_key, _) = api_key(server, "tenants/acme").await;
    let key = [("x-api-key", acme_key.as_str())];
    let before = server.catalog_snapshot().await;

    for path in [
        "/tenants/acme/%zz",
        "/tenants/acme%2fx/orders",
        "/tenants/globex%2f..%2facme/orders",
        "/tenants%5cglobex/orders",
        "/tenants\\globex/orders",
        "/tenants/%c3%28/orders",
        "/tenants/acme%00/orders",
    ] {
        println!("{path}");
        let with_key = check_http(server, http(&key, path, "localhost")).await;
        let anonymous = check_http(server, http(&[], path, "acme.example.com")).await;
        assert_denied(&with_key, INVALID_ARGUMENT, 400, "PATH_INVALID");
        assert_denied(&anonymous, INVALID_ARGUMENT, 400, "PATH_INVALID");
    }
    assert_eq!(server.catalog_snapshot().await, before);
}
