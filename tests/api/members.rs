//! MembershipService: a member's lifecycle, the owner named at creation, the last-owner rule and
//! deleted tenants' members. The `users` quota and a user's tenants are in `members_users`.

use sea_orm::{ConnectionTrait, Statement};
use tenant_plane::proto::{self, member::Role};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::on_both;
use crate::quotas::used;
use crate::support::{TestServer, create, new_tenant};

on_both!(
    a_member_is_added_read_listed_by_role_and_page_changed_and_removed,
    create_tenant_with_an_owner_makes_it_the_first_member_once,
    the_last_owner_can_be_neither_removed_nor_demoted,
    adding_a_user_twice_is_already_exists,
    members_of_a_deleted_tenant_are_kept_unchangeable_and_restored_on_undelete,
);

/// AddMember of `user` with `role` to `tenants/{slug}`.
pub async fn add(
    server: &TestServer,
    slug: &str,
    user: &str,
    role: Role,
) -> Result<proto::Member, Status> {
    let member = proto::Member {
        user_id: user.to_owned(),
        role: role as i32,
        ..Default::default()
    };
    let request = proto::AddMemberRequest {
        parent: format!("tenants/{slug}"),
        member: Some(member),
        request_id: String::new(),
    };
    Ok(server.members().add_member(request).await?.into_inner())
}

/// GetMember by name.
pub async fn get(server: &TestServer, name: &str) -> Result<proto::Member, Status> {
    let request = proto::GetMemberRequest {
        name: name.to_owned(),
    };
    Ok(server.members().get_member(request).await?.into_inner())
}

/// ListMembers of `tenants/{slug}`.
pub async fn list(
    server: &TestServer,
    slug: &str,
    role: Role,
    page_size: i32,
    page_token: &str,
) -> Result<proto::ListMembersResponse, Status> {
    let request = proto::ListMembersRequest {
        parent: format!("tenants/{slug}"),
        page_size,
        page_token: page_token.to_owned(),
        role: role as i32,
    };
    Ok(server.members().list_members(request).await?.into_inner())
}

/// UpdateMember's role, with a mask naming `role` and the etag given.
pub async fn set_role(
    server: &TestServer,
    name: &str,
    role: Role,
    etag: &str,
) -> Result<proto::Member, Status> {
    let member = proto::Member {
        name: name.to_owned(),
        role: role as i32,
        etag: etag.to_owned(),
        ..Default::default()
    };
    let update_mask = Some(prost_types::FieldMask {
        paths: vec!["role".into()],
    });
    let request = proto::UpdateMemberRequest {
        member: Some(member),
        update_mask,
    };
    Ok(server.members().update_member(request).await?.into_inner())
}

/// RemoveMember by name, with an etag or "".
pub async fn remove(server: &TestServer, name: &str, etag: &str) -> Result<(), Status> {
    let request = proto::RemoveMemberRequest {
        name: name.to_owned(),
        etag: etag.to_owned(),
    };
    server.members().remove_member(request).await.map(|_| ())
}

/// The rows of `tenant_members`, read from the catalog itself.
pub async fn member_rows(server: &TestServer) -> i64 {
    let db = server.catalog().await;
    let sql = "SELECT COUNT(*) AS n FROM tenant_members";
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("count members")
        .expect("a row");
    let n = row.try_get::<i64>("", "n").expect("n");
    db.close().await.expect("close");
    n
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

async fn a_member_is_added_read_listed_by_role_and_page_changed_and_removed(server: &TestServer) {
    let acme = create(server, "acme").await;
    let mut names = Vec::new();
    for (user, role) in [
        ("ann@example.com", Role::Owner),
        ("bob", Role::Admin),
        ("cy", Role::Member),
        ("dee", Role::Admin),
        ("eve", Role::Member),
    ] {
        let added = add(server, "acme", user, role).await.expect("add");
        assert_eq!(added.name, format!("{}/members/{user}", acme.name));
        assert_eq!((added.user_id.as_str(), added.role()), (user, role));
        assert!(added.join_time.is_some() && !added.etag.is_empty());
        names.push(added.name);
    }

    let bob = get(server, "tenants/acme/members/bob")
        .await
        .expect("get by slug");
    assert_eq!(
        (bob.name.as_str(), bob.role()),
        (names[1].as_str(), Role::Admin)
    );
    let admins = list(server, "acme", Role::Admin, 0, "")
        .await
        .expect("list admins");
    let admin_ids: Vec<_> = admins.members.iter().map(|m| m.user_id.as_str()).collect();
    assert_eq!(admin_ids, ["bob", "dee"]);
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = list(server, "acme", Role::Unspecified, 2, &token)
            .await
            .expect("page");
        assert!(page.members.len() <= 2);
        seen.extend(page.members.into_iter().map(|m| m.user_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["ann@example.com", "bob", "cy", "dee", "eve"]);

    let promoted = set_role(server, &bob.name, Role::Owner, &bob.etag)
        .await
        .expect("promote");
    assert_eq!(promoted.role(), Role::Owner);
    assert_ne!(promoted.etag, bob.etag);
    let stale = set_role(server, &bob.name, Role::Member, &bob.etag).await;
    let status = assert_code(stale, Code::Aborted);
    assert_eq!(
        status.get_details_error_info().expect("ErrorInfo").reason,
        "ETAG_MISMATCH"
    );
    assert_code(remove(server, &bob.name, &bob.etag).await, Code::Aborted);

    remove(server, &bob.name, &promoted.etag)
        .await
        .expect("remove");
    assert_code(get(server, &bob.name).await, Code::NotFound);
    assert_code(remove(server, &bob.name, "").await, Code::NotFound);
    assert_eq!(used(server, "acme").await["users"], 4);
    assert_eq!(member_rows(server).await, 4);
}

async fn create_tenant_with_an_owner_makes_it_the_first_member_once(server: &TestServer) {
    let request = proto::CreateTenantRequest {
        tenant: Some(new_tenant("acme")),
        request_id: uuid::Uuid::now_v7().to_string(),
        owner_user_id: "founder@example.com".into(),
        ..Default::default()
    };
    let first = server
        .tenants()
        .create_tenant(request.clone())
        .await
        .expect("create")
        .into_inner();
    let retried = server
        .tenants()
        .create_tenant(request)
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.id, first.id);

    let members = list(server, "acme", Role::Unspecified, 0, "")
        .await
        .expect("list")
        .members;
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(
        (members[0].user_id.as_str(), members[0].role()),
        ("founder@example.com", Role::Owner)
    );
    assert_eq!(
        members[0].name,
        format!("{}/members/founder@example.com", first.name)
    );
    assert_eq!(used(server, "acme").await["users"], 1);

    let no_owner = create(server, "globex").await;
    assert!(
        list(server, &no_owner.slug, Role::Unspecified, 0, "")
            .await
            .expect("list")
            .members
            .is_empty()
    );
}

async fn the_last_owner_can_be_neither_removed_nor_demoted(server: &TestServer) {
    create(server, "acme").await;
    let ann = add(server, "acme", "ann", Role::Owner)
        .await
        .expect("owner");
    let bob = add(server, "acme", "bob", Role::Member)
        .await
        .expect("member");

    let status = assert_code(
        remove(server, &ann.name, "").await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("last owner"), "{status:?}");
    assert_code(
        set_role(server, &ann.name, Role::Admin, "").await,
        Code::FailedPrecondition,
    );
    assert_eq!(
        get(server, &ann.name).await.expect("still there").role(),
        Role::Owner
    );

    let bob = set_role(server, &bob.name, Role::Owner, "")
        .await
        .expect("a second owner");
    set_role(server, &ann.name, Role::Admin, "")
        .await
        .expect("ann may step down now");
    assert_code(
        set_role(server, &bob.name, Role::Member, "").await,
        Code::FailedPrecondition,
    );
    assert_code(
        remove(server, &bob.name, "").await,
        Code::FailedPrecondition,
    );
    remove(server, &ann.name, "")
        .await
        .expect("an admin may leave");
}

async fn adding_a_user_twice_is_already_exists(server: &TestServer) {
    create(server, "acme").await;
    add(server, "acme", "ann", Role::Member)
        .await
        .expect("first");
    assert_code(
        add(server, "acme", "ann", Role::Admin).await,
        Code::AlreadyExists,
    );
    let ann = get(server, "tenants/acme/members/ann").await.expect("get");
    assert_eq!(ann.role(), Role::Member, "the first add stands");
    assert_eq!(used(server, "acme").await["users"], 1);
}

async fn members_of_a_deleted_tenant_are_kept_unchangeable_and_restored_on_undelete(
    server: &TestServer,
) {
    create(server, "acme").await;
    let ann = add(server, "acme", "ann", Role::Owner)
        .await
        .expect("owner");
    let bob = add(server, "acme", "bob", Role::Member)
        .await
        .expect("member");
    let delete = proto::DeleteTenantRequest {
        name: "tenants/acme".into(),
        etag: String::new(),
    };
    server
        .tenants()
        .delete_tenant(delete)
        .await
        .expect("delete");

    assert_code(
        add(server, "acme", "cy", Role::Member).await,
        Code::FailedPrecondition,
    );
    assert_code(
        set_role(server, &bob.name, Role::Admin, "").await,
        Code::FailedPrecondition,
    );
    assert_code(
        remove(server, &bob.name, "").await,
        Code::FailedPrecondition,
    );
    let kept = list(server, "acme", Role::Unspecified, 0, "")
        .await
        .expect("list")
        .members;
    assert_eq!(kept.len(), 2);
    assert_eq!(get(server, &ann.name).await.expect("get"), ann);

    let undelete = proto::UndeleteTenantRequest {
        name: "tenants/acme".into(),
        etag: String::new(),
    };
    server
        .tenants()
        .undelete_tenant(undelete)
        .await
        .expect("undelete");
    assert_eq!(get(server, &bob.name).await.expect("restored"), bob);
    remove(server, &bob.name, &bob.etag)
        .await
        .expect("changeable again");
}
