//! Tenant API keys: a secret shown once and stored only as a hash, listed without secrets,
//! revoked at once, refused without a trace, and expiring on time.

use sea_orm::{ConnectionTrait, Statement};
use sha2::{Digest, Sha256};
use tenant_plane::proto::{self, resolve_tenant_request::Key};
use tonic::{Code, Status};

use crate::on_both;
use crate::support::{Db, TestServer, assert_bad_field, column_of, create};

on_both!(
    create_api_key_shows_the_secret_once_and_stores_only_its_hash,
    resolve_tenant_finds_the_tenant_of_a_key_and_refuses_wrong_or_empty_keys,
    list_api_keys_pages_through_every_key_in_creation_order_without_secrets,
    list_api_keys_refuses_negative_page_sizes_and_foreign_or_tampered_tokens,
    revoke_api_key_stops_the_key_at_once_and_keeps_the_first_revoke_time,
    revoke_api_key_refuses_keys_of_other_tenants_and_malformed_names,
    create_api_key_refuses_bad_input_and_deleted_tenants_without_writing,
    create_api_key_refuses_expire_times_that_are_not_valid_timestamps,
    create_api_key_returns_the_expire_time_as_stored,
    an_api_key_stops_resolving_once_its_expire_time_passes,
);

type Created = proto::CreateApiKeyResponse;

/// CreateApiKey for `parent` with this display name and expiry.
pub async fn try_create_key(
    server: &TestServer,
    parent: &str,
    display_name: &str,
    expire_time: Expiry,
) -> Result<Created, Status> {
    let (parent, display_name) = (parent.to_owned(), display_name.to_owned());
    let api_key = Some(proto::ApiKey {
        display_name,
        expire_time,
        ..Default::default()
    });
    let request = proto::CreateApiKeyRequest { parent, api_key };
    Ok(server.tenants().create_api_key(request).await?.into_inner())
}

type Expiry = Option<prost_types::Timestamp>;

/// CreateApiKey, which must succeed.
pub async fn create_key(server: &TestServer, parent: &str, label: &str, expiry: Expiry) -> Created {
    let created = try_create_key(server, parent, label, expiry).await;
    created.unwrap_or_else(|s| panic!("create a key for {parent}: {s:?}"))
}

/// ResolveTenant by API key secret.
pub async fn resolve_key(
    server: &TestServer,
    secret: &str,
) -> Result<proto::ResolveTenantResponse, Status> {
    let key = Some(Key::ApiKey(secret.to_owned()));
    let request = proto::ResolveTenantRequest { key };
    Ok(server.tenants().resolve_tenant(request).await?.into_inner())
}

async fn list_keys(
    server: &TestServer,
    parent: &str,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListApiKeysResponse, Status> {
    let (parent, page_token) = (parent.to_owned(), page_token.to_owned());
    let request = proto::ListApiKeysRequest {
        parent,
        page_size,
        page_token,
    };
    Ok(server.tenants().list_api_keys(request).await?.into_inner())
}

async fn revoke(server: &TestServer, name: &str) -> Result<proto::ApiKey, Status> {
    let name = name.to_owned();
    let request = proto::RevokeApiKeyRequest { name };
    Ok(server.tenants().revoke_api_key(request).await?.into_inner())
}

/// Every key of `parent`, in one page.
async fn all_keys(server: &TestServer, parent: &str) -> Vec<proto::ApiKey> {
    let listed = list_keys(server, parent, 0, "").await;
    let page = listed.unwrap_or_else(|s| panic!("list the keys of {parent}: {s:?}"));
    assert!(page.next_page_token.is_empty(), "one page holds them all");
    page.api_keys
}

/// Every `api_keys` row, each column read as text (NULL as empty) with its name.
async fn stored_keys(server: &TestServer) -> Vec<Vec<(String, String)>> {
    let db = server.catalog().await;
    let columns_sql = match server.db {
        Db::Sqlite => "SELECT name FROM pragma_table_info('api_keys')",
        Db::Postgres => {
            "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns \
             WHERE table_name = 'api_keys' AND table_schema = current_schema()"
        }
    };
    let columns = column_of(&db, columns_sql).await;
    assert!(columns.len() >= 8, "api_keys has columns {columns:?}");
    let select: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST({c} AS TEXT) AS {c}"))
        .collect();
    let sql = format!("SELECT {} FROM api_keys", select.join(", "));
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("read api_keys");
    db.close().await.expect("close");
    // A value that is not UTF-8 (an SQLite blob uuid) is read lossily, byte for byte.
    let text = |row: &sea_orm::QueryResult, c: &str| match row.try_get("", c) {
        Ok(text) => Option::<String>::unwrap_or_default(text),
        Err(_) => {
            let bytes: Option<Vec<u8>> = row.try_get("", c).expect(c);
            String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()
        }
    };
    rows.iter()
        .map(|row| columns.iter().map(|c| (c.clone(), text(row, c))).collect())
        .collect()
}

/// A timestamp `seconds` from now by `server`'s clock (negative: in the past).
fn in_seconds(server: &TestServer, seconds: i64) -> prost_types::Timestamp {
    let seconds = server.clock.now().timestamp() + seconds;
    prost_types::Timestamp { seconds, nanos: 0 }
}

fn names(keys: &[proto::ApiKey]) -> Vec<&str> {
    keys.iter().map(|k| k.name.as_str()).collect()
}

async fn create_api_key_shows_the_secret_once_and_stores_only_its_hash(server: &TestServer) {
    let tenant = create(server, "keyed").await;

    let created = create_key(server, "tenants/keyed", "ci deploys", None).await;

    let (secret, key) = (&created.secret, created.api_key.clone().expect("the key"));
    assert!(secret.starts_with("tpk_") && secret.len() > 40, "{secret}");
    let (parent, key_id) = key.name.rsplit_once("/apiKeys/").expect("a key name");
    assert_eq!(parent, format!("tenants/{}", tenant.id));
    uuid::Uuid::try_parse(key_id).expect("the key id is a UUID");
    assert_eq!(key.display_name, "ci deploys");
    assert!(!key.prefix.is_empty() && secret.starts_with(&key.prefix));
    assert!(key.create_time.is_some() && key.expire_time.is_none() && key.revoke_time.is_none());

    let rows = stored_keys(server).await;
    assert_eq!(rows.len(), 1);
    // Nothing past the shown prefix, so neither the secret nor anything containing it.
    let hidden = &secret[key.prefix.len()..];
    for (column, text) in &rows[0] {
        assert!(!text.contains(hidden), "api_keys.{column} holds the secret");
    }
    let hash = rows[0].iter().find(|(c, _)| c == "secret_hash");
    let hash = &hash.expect("a secret_hash column").1;
    // 64 lowercase hex digits: the secret's SHA-256.
    assert_eq!(*hash, format!("{:x}", Sha256::digest(secret.as_bytes())));
    let listed = all_keys(server, "tenants/keyed").await;
    assert_eq!(listed, [key], "CreateApiKey returns the key as stored");
}

async fn resolve_tenant_finds_the_tenant_of_a_key_and_refuses_wrong_or_empty_keys(
    server: &TestServer,
) {
    let tenant = create(server, "resolvable").await;
    create(server, "bystander").await;
    let secret = create_key(server, &tenant.name, "", None).await.secret;
    let key = Some(Key::Slug("resolvable".into()));
    let request = proto::ResolveTenantRequest { key };
    let by_slug = server.tenants().resolve_tenant(request).await;
    let by_slug = by_slug.expect("resolve by slug").into_inner();

    let resolved = resolve_key(server, &secret).await.expect("resolve by key");

    let found = resolved.tenant.expect("a tenant");
    assert_eq!((found.id, found.slug), (tenant.id, "resolvable".into()));
    assert!(resolved.location.is_some());
    assert_eq!(resolved.location, by_slug.location);
    let mut wrong = secret.clone();
    wrong.pop();
    wrong.push(if secret.ends_with('A') { 'B' } else { 'A' });
    for bad in [wrong.as_str(), "tpk_nothing", "resolvable"] {
        let status = resolve_key(server, bad).await.expect_err("a wrong key");
        assert_eq!(status.code(), Code::NotFound, "{bad}: {status:?}");
        assert!(!status.message().contains(bad), "no secret is echoed");
    }
    let empty = resolve_key(server, "").await.expect_err("an empty key");
    assert_bad_field(&empty, "api_key");
}

async fn list_api_keys_pages_through_every_key_in_creation_order_without_secrets(
    server: &TestServer,
) {
    let tenant = create(server, "many-keys").await;
    let other = create(server, "other-keys").await;
    create_key(server, &other.name, "not mine", None).await;
    let mut made = Vec::new();
    for i in 0..4 {
        let created = create_key(server, "tenants/many-keys", &format!("key {i}"), None).await;
        made.push(created.api_key.expect("key"));
    }

    let (mut walked, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = list_keys(server, &tenant.name, 1, &token).await;
        let page = page.expect("a page");
        pages += 1;
        assert!(page.api_keys.len() <= 1);
        walked.extend(page.api_keys);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }

    assert_eq!(pages, 4, "no empty trailing page");
    assert_eq!(walked, made, "creation order, each key once and whole");
    for parent in [format!("tenants/{}", tenant.id), "tenants/many-keys".into()] {
        let all = all_keys(server, &parent).await;
        assert_eq!(names(&all), names(&made), "parent {parent}");
        // Only the secret's recognisable start is ever listed.
        let short = |p: &String| p.starts_with("tpk_") && p.len() < 20;
        assert!(all.iter().all(|k| short(&k.prefix)));
    }
}

async fn list_api_keys_refuses_negative_page_sizes_and_foreign_or_tampered_tokens(
    server: &TestServer,
) {
    for slug in ["lister", "neighbour"] {
        create(server, slug).await;
        for _ in 0..2 {
            create_key(server, &format!("tenants/{slug}"), "", None).await;
        }
    }
    let (lister, neighbour) = ("tenants/lister", "tenants/neighbour");
    let token = list_keys(server, neighbour, 1, "").await.expect("a page");
    let token = token.next_page_token;
    assert!(!token.is_empty());

    let negative = list_keys(server, lister, -1, "").await.unwrap_err();
    assert_bad_field(&negative, "page_size");
    let foreign = list_keys(server, lister, 1, &token).await.unwrap_err();
    assert_bad_field(&foreign, "page_token");
    let middle = token.len() / 2;
    let flipped = ['A', 'B'][usize::from(token.as_bytes()[middle] == b'A')];
    let tampered = format!("{}{flipped}{}", &token[..middle], &token[middle + 1..]);
    for bad in [tampered.as_str(), "not-a-token", "%%%"] {
        let status = list_keys(server, neighbour, 1, bad).await.unwrap_err();
        assert_bad_field(&status, "page_token");
    }
    let unknown = list_keys(server, "tenants/nobody", 0, "").await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let malformed = list_keys(server, "lister", 0, "").await.unwrap_err();
    assert_bad_field(&malformed, "parent");
}

async fn revoke_api_key_stops_the_key_at_once_and_keeps_the_first_revoke_time(server: &TestServer) {
    create(server, "revoker").await;
    let created = create_key(server, "tenants/revoker", "old", None).await;
    let kept = create_key(server, "tenants/revoker", "kept", None)
        .await
        .secret;
    let (key, secret) = (created.api_key.expect("key"), created.secret);
    resolve_key(server, &secret).await.expect("works before");

    let revoked = revoke(server, &key.name).await.expect("revoke");

    let first = revoked.revoke_time.expect("revoke_time is set");
    assert_eq!(revoked.name, key.name);
    let status = resolve_key(server, &secret).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "stops at once: {status:?}");
    resolve_key(server, &kept).await.expect("others work");
    server.clock.advance(chrono::TimeDelta::seconds(1));
    let again = revoke(server, &key.name).await.expect("revoke again");
    assert_eq!(again.revoke_time, Some(first), "the first time stays");
    let listed = all_keys(server, "tenants/revoker").await;
    let revoke_times: Vec<_> = listed.iter().map(|k| k.revoke_time).collect();
    assert_eq!(revoke_times, [Some(first), None], "revoked keys are listed");
}

async fn revoke_api_key_refuses_keys_of_other_tenants_and_malformed_names(server: &TestServer) {
    let owner = create(server, "owner").await;
    let stranger = create(server, "stranger").await;
    let created = create_key(server, &owner.name, "", None).await;
    let key = created.api_key.expect("key");
    let key_id = key.name.rsplit_once("/apiKeys/").expect("key name").1;

    for name in [
        format!("tenants/{}/apiKeys/{key_id}", stranger.id),
        format!("tenants/stranger/apiKeys/{key_id}"),
        format!("tenants/nobody/apiKeys/{key_id}"),
        format!("tenants/owner/apiKeys/{}", uuid::Uuid::now_v7()),
    ] {
        let status = revoke(server, &name).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{name}: {status:?}");
    }
    for name in [
        String::new(),
        "tenants/owner".into(),
        "tenants/owner/apiKeys/".into(),
        "tenants/owner/apiKeys/not-a-uuid".into(),
        format!("owner/apiKeys/{key_id}"),
        format!("tenants/Bad Slug!/apiKeys/{key_id}"),
        format!("tenants/owner/keys/{key_id}"),
    ] {
        let status = revoke(server, &name).await.expect_err("a malformed name");
        assert_bad_field(&status, "name");
    }
    resolve_key(server, &created.secret).await.expect("works");
    let listed = all_keys(server, "tenants/owner").await;
    assert!(listed[0].revoke_time.is_none());
}

async fn create_api_key_refuses_bad_input_and_deleted_tenants_without_writing(server: &TestServer) {
    create(server, "strict").await;
    let gone = create(server, "gone").await;
    let (name, etag) = (gone.name, String::new());
    let request = proto::DeleteTenantRequest { name, etag };
    let mut tenants = server.tenants();
    tenants.delete_tenant(request).await.expect("delete");
    let (strict, long, past) = (
        "tenants/strict",
        "x".repeat(201),
        Some(in_seconds(server, -60)),
    );

    let (expiry, label) = (Err("api_key.expire_time"), Err("api_key.display_name"));
    let refusals = [
        (strict, "", past, expiry),
        (strict, long.as_str(), None, label),
        (strict, "bell\u{7}", None, label),
        ("tenants/nobody", "", None, Ok(Code::NotFound)),
        ("strict", "", None, Err("parent")),
        ("", "", None, Err("parent")),
        ("tenants/gone", "", None, Ok(Code::FailedPrecondition)),
    ];
    for (parent, display_name, expire_time, expected) in refusals {
        let status = try_create_key(server, parent, display_name, expire_time).await;
        let status = status.expect_err("refused");
        match expected {
            Err(field) => assert_bad_field(&status, field),
            Ok(code) => assert_eq!(status.code(), code, "{parent}: {status:?}"),
        }
        assert!(stored_keys(server).await.is_empty(), "{parent}: wrote");
    }

    assert!(all_keys(server, strict).await.is_empty());
    let longest = create_key(server, strict, &"é".repeat(200), None).await;
    let display_name = longest.api_key.expect("key").display_name;
    assert_eq!(display_name.chars().count(), 200, "characters, not bytes");
    assert_eq!(stored_keys(server).await.len(), 1);
}

/// A time in the last second of a minute an hour ahead, where chrono accepts leap seconds.
fn minute_end(nanos: i32) -> Expiry {
    let seconds = (chrono::Utc::now().timestamp() + 3600) / 60 * 60 + 59;
    Some(prost_types::Timestamp { seconds, nanos })
}

async fn create_api_key_refuses_expire_times_that_are_not_valid_timestamps(server: &TestServer) {
    create(server, "timely").await;
    // google.protobuf.Timestamp: nanos in 0..=999_999_999.
    for nanos in [-1, 1_000_000_000, 1_500_000_000] {
        let created = try_create_key(server, "tenants/timely", "", minute_end(nanos)).await;
        let status = created.map(|c| c.api_key).expect_err("not a Timestamp");
        assert_bad_field(&status, "api_key.expire_time");
    }
    assert!(stored_keys(server).await.is_empty());
}

async fn create_api_key_returns_the_expire_time_as_stored(server: &TestServer) {
    create(server, "precise").await;

    let created = create_key(server, "tenants/precise", "", minute_end(123_456_789)).await;

    let listed = all_keys(server, "tenants/precise").await;
    assert_eq!(listed, created.api_key.into_iter().collect::<Vec<_>>());
}

async fn an_api_key_stops_resolving_once_its_expire_time_passes(server: &TestServer) {
    create(server, "short-lived").await;
    let expire_time = in_seconds(server, 2);
    let created = create_key(server, "tenants/short-lived", "", Some(expire_time)).await;
    let key = created.api_key.expect("key");
    assert_eq!(key.expire_time, Some(expire_time));
    resolve_key(server, &created.secret)
        .await
        .expect("works now");

    // The expiry is a time by the server's clock: moved past it, not waited for.
    server.clock.advance(chrono::TimeDelta::milliseconds(2500));

    let status = resolve_key(server, &created.secret).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let listed = all_keys(server, "tenants/short-lived").await;
    assert_eq!(names(&listed), [key.name.as_str()], "still listed");
}
