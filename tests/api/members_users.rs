//! MembershipService: the `users` quota is the member count, exact under concurrent adds;
//! ListTenantsForUser answers every tenant a user may enter, with the user's role; purging a
//! tenant deletes its members.

use tenant_plane::proto::{self, member::Role};
use tonic::Code;
use tonic_types::StatusExt;

use crate::members::{add, member_rows};
use crate::on_both;
use crate::quotas::{set_limits, used};
use crate::support::{TestServer, create};

on_both!(
    twenty_concurrent_adds_against_a_limit_of_ten_admit_exactly_ten,
    list_tenants_for_user_answers_every_tenant_with_the_users_role,
    purging_a_tenant_deletes_its_members_and_keeps_the_others,
);

async fn twenty_concurrent_adds_against_a_limit_of_ten_admit_exactly_ten(server: &TestServer) {
    create(server, "acme").await;
    set_limits(server, "acme", &[("users", 10)]).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = server.members();
        tasks.push(tokio::spawn(async move {
            let member = proto::Member {
                user_id: format!("user-{i:02}"),
                role: Role::Member as i32,
                ..Default::default()
            };
            let request = proto::AddMemberRequest {
                parent: "tenants/acme".into(),
                member: Some(member),
                request_id: String::new(),
            };
            client.add_member(request).await
        }));
    }
    let (mut admitted, mut refused) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => admitted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                let failure = status.get_details_quota_failure().expect("QuotaFailure");
                assert_eq!(
                    failure.violations[0].subject,
                    format!("tenants/{}", server_tenant_id(server, "acme").await)
                );
                assert!(
                    failure.violations[0].description.contains("users"),
                    "{failure:?}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!((admitted, refused), (10, 10));
    assert_eq!(member_rows(server).await, 10);
    assert_eq!(used(server, "acme").await["users"], 10);
}

async fn server_tenant_id(server: &TestServer, slug: &str) -> String {
    let request = proto::GetTenantRequest {
        name: format!("tenants/{slug}"),
    };
    server
        .tenants()
        .get_tenant(request)
        .await
        .expect("get tenant")
        .into_inner()
        .id
}

async fn list_tenants_for_user_answers_every_tenant_with_the_users_role(server: &TestServer) {
    let mut tenants = Vec::new();
    for (slug, role) in [
        ("acme", Role::Owner),
        ("globex", Role::Admin),
        ("initech", Role::Member),
    ] {
        tenants.push(create(server, slug).await);
        add(server, slug, "ann", role).await.expect("add ann");
    }
    create(server, "hooli").await;
    add(server, "hooli", "bob", Role::Owner)
        .await
        .expect("someone else's tenant");
    let for_ann =
        |page_size: i32, page_token: String, show_deleted: bool| proto::ListTenantsForUserRequest {
            user_id: "ann".into(),
            page_size,
            page_token,
            show_deleted,
        };

    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = server
            .members()
            .list_tenants_for_user(for_ann(2, token, false))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.memberships);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let found: Vec<_> = seen
        .iter()
        .map(|m| (m.slug.as_str(), m.role(), m.tenant.clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("acme", Role::Owner, tenants[0].name.clone()),
            ("globex", Role::Admin, tenants[1].name.clone()),
            ("initech", Role::Member, tenants[2].name.clone()),
        ]
    );
    assert!(
        seen.iter()
            .all(|m| m.state() == proto::tenant::State::Active
                || m.state() == proto::tenant::State::Provisioning)
    );
    assert_eq!(seen[0].member, format!("{}/members/ann", tenants[0].name));

    let delete = proto::DeleteTenantRequest {
        name: "tenants/globex".into(),
        etag: String::new(),
    };
    server
        .tenants()
        .delete_tenant(delete)
        .await
        .expect("delete");
    let live = server
        .members()
        .list_tenants_for_user(for_ann(0, String::new(), false))
        .await
        .expect("live")
        .into_inner();
    let slugs: Vec<_> = live.memberships.iter().map(|m| m.slug.as_str()).collect();
    assert_eq!(slugs, ["acme", "initech"]);
    let all = server
        .members()
        .list_tenants_for_user(for_ann(0, String::new(), true))
        .await
        .expect("all")
        .into_inner();
    assert_eq!(all.memberships.len(), 3);
    assert_eq!(all.memberships[1].state(), proto::tenant::State::Deleted);
}

async fn purging_a_tenant_deletes_its_members_and_keeps_the_others(server: &TestServer) {
    create(server, "leaving").await;
    create(server, "staying").await;
    for slug in ["leaving", "staying"] {
        add(server, slug, "ann", Role::Owner).await.expect("owner");
        add(server, slug, "bob", Role::Member)
            .await
            .expect("member");
    }
    let delete = proto::DeleteTenantRequest {
        name: "tenants/leaving".into(),
        ..Default::default()
    };
    server
        .tenants()
        .delete_tenant(delete)
        .await
        .expect("delete");
    assert_eq!(member_rows(server).await, 4, "deleting keeps the members");
    let purge = proto::DeprovisionTenantRequest {
        tenant: "tenants/leaving".into(),
        confirm_slug: "leaving".into(),
        ..Default::default()
    };
    server
        .provisioning()
        .deprovision_tenant(purge)
        .await
        .expect("purge");
    assert_eq!(member_rows(server).await, 2);
    let for_ann = proto::ListTenantsForUserRequest {
        user_id: "ann".into(),
        show_deleted: true,
        ..Default::default()
    };
    let left = server
        .members()
        .list_tenants_for_user(for_ann)
        .await
        .expect("list");
    let slugs: Vec<_> = left
        .into_inner()
        .memberships
        .into_iter()
        .map(|m| m.slug)
        .collect();
    assert_eq!(slugs, ["staying"]);
}
