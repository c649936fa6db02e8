//! MembershipService refusals: malformed input answers BadRequest and writes nothing, unknown
//! tenants are NOT_FOUND, and a retried AddMember is counted once.

use tenant_plane::proto::{self, member::Role};
use tonic::Code;

use crate::members::{add, get, list, member_rows, set_role};
use crate::on_both;
use crate::quotas::used;
use crate::support::{TestServer, assert_bad_field, create};

on_both!(
    add_member_refuses_bad_user_ids_roles_and_parents_without_writing,
    list_and_update_refuse_bad_pages_masks_and_etags_without_writing,
    calls_on_an_unknown_tenant_are_not_found,
    add_member_with_a_request_id_is_counted_once,
);

fn add_request(parent: &str, user: &str, role: i32) -> proto::AddMemberRequest {
    let member = proto::Member {
        user_id: user.to_owned(),
        role,
        ..Default::default()
    };
    proto::AddMemberRequest {
        parent: parent.to_owned(),
        member: Some(member),
        request_id: String::new(),
    }
}

async fn add_member_refuses_bad_user_ids_roles_and_parents_without_writing(server: &TestServer) {
    create(server, "acme").await;
    let owner = Role::Owner as i32;
    let too_long = "x".repeat(129);
    let cases: [(&str, &str, i32, &[&str]); 7] = [
        ("tenants/acme", "", owner, &["member.user_id"]),
        ("tenants/acme", &too_long, owner, &["member.user_id"]),
        ("tenants/acme", "ann smith", owner, &["member.user_id"]),
        ("tenants/acme", "ann/x", owner, &["member.user_id"]),
        (
            "tenants/acme",
            "ann",
            Role::Unspecified as i32,
            &["member.role"],
        ),
        ("tenants/acme", "ann", 42, &["member.role"]),
        (
            "acme",
            "'; drop table tenant_members;--",
            42,
            &["parent", "member.user_id", "member.role"],
        ),
    ];
    for (parent, user, role, fields) in cases {
        let refused = server
            .members()
            .add_member(add_request(parent, user, role))
            .await;
        let status = refused.expect_err("refused");
        for field in fields {
            assert_bad_field(&status, field);
        }
    }
    let mut output_only = add_request("tenants/acme", "ann", owner);
    if let Some(m) = output_only.member.as_mut() {
        m.etag = "r1".into();
    }
    let status = server
        .members()
        .add_member(output_only)
        .await
        .expect_err("refused");
    assert_bad_field(&status, "member.etag");
    let mut bad_id = add_request("tenants/acme", "ann", owner);
    bad_id.request_id = "not-a-uuid".into();
    let status = server
        .members()
        .add_member(bad_id)
        .await
        .expect_err("refused");
    assert_bad_field(&status, "request_id");
    assert_eq!(member_rows(server).await, 0);
}

async fn list_and_update_refuse_bad_pages_masks_and_etags_without_writing(server: &TestServer) {
    create(server, "acme").await;
    create(server, "globex").await;
    let ann = add(server, "acme", "ann", Role::Owner)
        .await
        .expect("owner");
    add(server, "acme", "bob", Role::Member)
        .await
        .expect("member");
    add(server, "globex", "cy", Role::Member)
        .await
        .expect("member");

    assert_bad_field(
        &list(server, "acme", Role::Unspecified, -1, "")
            .await
            .expect_err("refused"),
        "page_size",
    );
    assert_bad_field(
        &list(server, "acme", Role::Unspecified, 0, "garbage")
            .await
            .expect_err("refused"),
        "page_token",
    );
    let page = list(server, "acme", Role::Unspecified, 1, "")
        .await
        .expect("page");
    let foreign = list(
        server,
        "globex",
        Role::Unspecified,
        1,
        &page.next_page_token,
    )
    .await;
    assert_bad_field(
        &foreign.expect_err("a token of another tenant"),
        "page_token",
    );
    let other_role = list(server, "acme", Role::Member, 1, &page.next_page_token).await;
    assert_bad_field(
        &other_role.expect_err("a token of another filter"),
        "page_token",
    );
    let bad_role = proto::ListMembersRequest {
        parent: "tenants/acme".into(),
        role: 9,
        ..Default::default()
    };
    assert_bad_field(
        &server
            .members()
            .list_members(bad_role)
            .await
            .expect_err("refused"),
        "role",
    );
    let bad_parent = proto::ListMembersRequest {
        parent: "tenants/".into(),
        ..Default::default()
    };
    assert_bad_field(
        &server
            .members()
            .list_members(bad_parent)
            .await
            .expect_err("refused"),
        "parent",
    );

    for (path, field) in [
        ("user_id", "update_mask"),
        ("etag", "update_mask"),
        ("nickname", "update_mask"),
    ] {
        let member = proto::Member {
            name: ann.name.clone(),
            role: Role::Admin as i32,
            ..Default::default()
        };
        let update_mask = Some(prost_types::FieldMask {
            paths: vec![path.into()],
        });
        let request = proto::UpdateMemberRequest {
            member: Some(member),
            update_mask,
        };
        assert_bad_field(
            &server
                .members()
                .update_member(request)
                .await
                .expect_err("refused"),
            field,
        );
    }
    assert_bad_field(
        &set_role(server, &ann.name, Role::Unspecified, "")
            .await
            .expect_err("refused"),
        "member.role",
    );
    assert_bad_field(
        &set_role(server, &ann.name, Role::Admin, "3")
            .await
            .expect_err("refused"),
        "member.etag",
    );
    assert_bad_field(
        &set_role(server, "tenants/acme/ann", Role::Admin, "")
            .await
            .expect_err("refused"),
        "member.name",
    );
    let remove = proto::RemoveMemberRequest {
        name: ann.name.clone(),
        etag: "bogus".into(),
    };
    assert_bad_field(
        &server
            .members()
            .remove_member(remove)
            .await
            .expect_err("refused"),
        "etag",
    );
    let for_nobody = proto::ListTenantsForUserRequest {
        user_id: String::new(),
        ..Default::default()
    };
    assert_bad_field(
        &server
            .members()
            .list_tenants_for_user(for_nobody)
            .await
            .expect_err("refused"),
        "user_id",
    );
    let bad_size = proto::ListTenantsForUserRequest {
        user_id: "ann".into(),
        page_size: -5,
        ..Default::default()
    };
    assert_bad_field(
        &server
            .members()
            .list_tenants_for_user(bad_size)
            .await
            .expect_err("refused"),
        "page_size",
    );

    assert_eq!(get(server, &ann.name).await.expect("unchanged"), ann);
    assert_eq!(member_rows(server).await, 3);
}

async fn calls_on_an_unknown_tenant_are_not_found(server: &TestServer) {
    let missing = "tenants/0190f5d6-7a1b-7c3d-8e4f-5a6b7c8d9e0f";
    let status = add(server, "nobody", "ann", Role::Owner)
        .await
        .expect_err("no tenant");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = get(server, &format!("{missing}/members/ann"))
        .await
        .expect_err("no tenant");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = list(server, "nobody", Role::Unspecified, 0, "")
        .await
        .expect_err("no tenant");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = set_role(server, &format!("{missing}/members/ann"), Role::Admin, "").await;
    assert_eq!(status.expect_err("no tenant").code(), Code::NotFound);
    assert_eq!(member_rows(server).await, 0);
}

async fn add_member_with_a_request_id_is_counted_once(server: &TestServer) {
    create(server, "acme").await;
    let mut request = add_request("tenants/acme", "ann", Role::Owner as i32);
    request.request_id = uuid::Uuid::now_v7().to_string();
    let first = server
        .members()
        .add_member(request.clone())
        .await
        .expect("add")
        .into_inner();
    let again = server
        .members()
        .add_member(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, first);
    assert_eq!(used(server, "acme").await["users"], 1);

    request.member = Some(proto::Member {
        user_id: "bob".into(),
        role: Role::Admin as i32,
        ..Default::default()
    });
    let reused = server
        .members()
        .add_member(request)
        .await
        .expect_err("another request");
    assert_bad_field(&reused, "request_id");
    assert_eq!(member_rows(server).await, 1);
}
