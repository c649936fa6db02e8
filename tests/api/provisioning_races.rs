//! Provisionings of one tenant at once: each waits for the tenant's lock, and a later one finds
//! the earlier one's work done instead of building on a schema it took for missing.

use tenant_plane::proto::{self, tenant::State};

use crate::provisioning::status_of;
use crate::support::{Db, SAMPLE_MIGRATIONS, TestServer, create};

/// Calls of ProvisionTenant on one tenant at once.
const AT_ONCE: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisionings_of_one_tenant_at_once_all_succeed_and_build_it_once() {
    let server = TestServer::start_with(Db::Postgres, |c| c.tenant_auto_provision = false).await;
    for slug in ["race-a", "race-b", "race-c"] {
        let tenant = create(&server, slug).await;
        let calls = (0..AT_ONCE).map(|_| {
            let mut client = server.provisioning();
            let name = tenant.name.clone();
            tokio::spawn(async move {
                client
                    .provision_tenant(proto::ProvisionTenantRequest {
                        tenant: name,
                        ..Default::default()
                    })
                    .await
            })
        });
        let mut changed = 0;
        for call in calls.collect::<Vec<_>>() {
            let answer = call
                .await
                .expect("the call's task")
                .unwrap_or_else(|status| panic!("{slug}: {status:?}"))
                .into_inner();
            let provisioned = answer.tenant.expect("tenant");
            assert_eq!(provisioned.state(), State::Active, "{slug}");
            changed += usize::from(answer.changed);
        }
        assert_eq!(
            changed, 1,
            "{slug}: one call built the storage, the others found it"
        );
        let status = status_of(&server, &tenant.name).await;
        assert_eq!(status.last_error, "", "{slug}");
        assert_eq!(
            server.tenant_versions(&tenant).await,
            SAMPLE_MIGRATIONS,
            "{slug}: each migration applied once"
        );
    }
    server.stop().await;
}
