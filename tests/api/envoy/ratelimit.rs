//! RateLimitService/ShouldRateLimit through Envoy's client: descriptors against the tenants'
//! quotas, counted exactly as ConsumeQuota counts them.

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;

use crate::on_both;
use crate::quotas::{set_limits, used};
use crate::support::{TestServer, create};

on_both!(
    hits_are_counted_until_the_limit_and_an_over_limit_descriptor_counts_nothing,
    each_descriptor_gets_its_own_status_in_order,
    zero_hits_count_one_and_a_descriptor_may_set_its_own,
    a_resource_entry_picks_the_quota_and_gauges_are_only_checked,
    descriptors_that_are_not_ours_pass,
);

/// A descriptor from `(key, value)` entries.
pub(super) fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(key, value)| Entry {
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
        ..Default::default()
    }
}

pub(super) async fn should_rate_limit(
    server: &TestServer,
    descriptors: Vec<RateLimitDescriptor>,
    hits_addend: u32,
) -> RateLimitResponse {
    server
        .ratelimit()
        .should_rate_limit(RateLimitRequest {
            domain: "tenant-plane".into(),
            descriptors,
            hits_addend,
        })
        .await
        .expect("a rate limit answer")
        .into_inner()
}

/// One tenant's default-resource descriptor, `hits` times.
async fn calls(server: &TestServer, tenant: &str, hits: u32) -> RateLimitResponse {
    should_rate_limit(server, vec![descriptor(&[("tenant_id", tenant)])], hits).await
}

/// Asserts a status's code, limit, unit and remaining count, and a reset within `window`.
#[track_caller]
fn assert_status(
    status: &DescriptorStatus,
    code: Code,
    limit: u32,
    unit: Unit,
    remaining: u32,
    window: i64,
) {
    assert_eq!(status.code, code as i32, "{status:?}");
    let current = status.current_limit.as_ref().expect("a current limit");
    assert_eq!(
        (current.requests_per_unit, current.unit),
        (limit, unit as i32),
        "{status:?}"
    );
    assert_eq!(status.limit_remaining, remaining, "{status:?}");
    let reset = status.duration_until_reset.expect("a reset time").seconds;
    assert!((0..=window).contains(&reset), "{status:?}");
}

/// Moves each server's clock to the start of its next minute, so a per-minute count is not
/// reset halfway through a test (the clocks still tick: a test has the minute to run).
pub(super) fn at_a_new_minute(servers: &[&TestServer]) {
    for server in servers {
        let next = (server.clock.now().timestamp() / 60 + 1) * 60;
        server
            .clock
            .set(chrono::DateTime::from_timestamp(next, 0).expect("a time"));
    }
}

async fn hits_are_counted_until_the_limit_and_an_over_limit_descriptor_counts_nothing(
    server: &TestServer,
) {
    let tenant = create(server, "metered").await;
    set_limits(server, "metered", &[("api_calls_per_minute", 5)]).await;
    at_a_new_minute(&[server]);

    let first = calls(server, &tenant.id, 3).await;
    let over = calls(server, "metered", 3).await;
    let after_over = used(server, "metered").await["api_calls_per_minute"];
    let last = calls(server, "metered", 2).await;

    assert_eq!(first.overall_code, Code::Ok as i32);
    assert_status(&first.statuses[0], Code::Ok, 5, Unit::Minute, 2, 60);
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    assert_status(&over.statuses[0], Code::OverLimit, 5, Unit::Minute, 0, 60);
    assert_eq!(after_over, 3, "the refused hits were not counted");
    assert_eq!(last.overall_code, Code::Ok as i32);
    assert_status(&last.statuses[0], Code::Ok, 5, Unit::Minute, 0, 60);
    assert_eq!(used(server, "metered").await["api_calls_per_minute"], 5);
}

async fn each_descriptor_gets_its_own_status_in_order(server: &TestServer) {
    create(server, "roomy").await;
    create(server, "tight").await;
    set_limits(server, "roomy", &[("messages_per_day", 100)]).await;
    set_limits(server, "tight", &[("messages_per_day", 1)]).await;
    let messages = |tenant| descriptor(&[("tenant_id", tenant), ("resource", "messages_per_day")]);

    let answer = should_rate_limit(server, vec![messages("roomy"), messages("tight")], 2).await;

    assert_eq!(answer.overall_code, Code::OverLimit as i32);
    assert_eq!(answer.statuses.len(), 2);
    assert_status(&answer.statuses[0], Code::Ok, 100, Unit::Day, 98, 86_400);
    assert_status(
        &answer.statuses[1],
        Code::OverLimit,
        1,
        Unit::Day,
        0,
        86_400,
    );
    // Each descriptor stands alone: the admitted one was counted, the refused one was not.
    assert_eq!(used(server, "roomy").await["messages_per_day"], 2);
    assert_eq!(used(server, "tight").await["messages_per_day"], 0);
}

async fn zero_hits_count_one_and_a_descriptor_may_set_its_own(server: &TestServer) {
    create(server, "counted").await;
    set_limits(server, "counted", &[("messages_per_day", 10)]).await;
    let messages = descriptor(&[("tenant_id", "counted"), ("resource", "messages_per_day")]);

    let zero = should_rate_limit(server, vec![messages.clone()], 0).await;
    let own = RateLimitDescriptor {
        hits_addend: Some(UInt64Value { value: 4 }),
        ..messages
    };
    let overridden = should_rate_limit(server, vec![own], 1).await;

    assert_status(&zero.statuses[0], Code::Ok, 10, Unit::Day, 9, 86_400);
    assert_status(&overridden.statuses[0], Code::Ok, 10, Unit::Day, 5, 86_400);
    assert_eq!(used(server, "counted").await["messages_per_day"], 5);
}

async fn a_resource_entry_picks_the_quota_and_gauges_are_only_checked(server: &TestServer) {
    create(server, "mailer").await;
    set_limits(server, "mailer", &[("messages_per_day", 10), ("users", 2)]).await;

    let messages = should_rate_limit(
        server,
        vec![descriptor(&[
            ("tenant_id", "mailer"),
            ("resource", "messages_per_day"),
        ])],
        4,
    )
    .await;
    let users = |hits| {
        should_rate_limit(
            server,
            vec![descriptor(&[
                ("tenant_id", "mailer"),
                ("resource", "users"),
            ])],
            hits,
        )
    };
    let one_user = users(1).await;
    let three_users = users(3).await;

    assert_status(&messages.statuses[0], Code::Ok, 10, Unit::Day, 6, 86_400);
    let usage = used(server, "mailer").await;
    assert_eq!(
        (usage["messages_per_day"], usage["api_calls_per_minute"]),
        (4, 0)
    );
    assert_eq!(one_user.statuses[0].code, Code::Ok as i32);
    assert_eq!(three_users.statuses[0].code, Code::OverLimit as i32);
    let gauge = one_user.statuses[0]
        .current_limit
        .as_ref()
        .expect("a limit");
    assert_eq!(
        (gauge.requests_per_unit, gauge.unit),
        (2, Unit::Unknown as i32)
    );
    assert_eq!(
        one_user.statuses[0].duration_until_reset, None,
        "a gauge has no window"
    );
    assert_eq!(usage["users"], 0, "traffic does not raise a gauge");
}

async fn descriptors_that_are_not_ours_pass(server: &TestServer) {
    create(server, "paused").await;
    create(server, "boundless").await;
    set_limits(server, "boundless", &[("api_calls_per_minute", -1)]).await;
    at_a_new_minute(&[server]);
    server
        .tenants()
        .suspend_tenant(tenant_plane::proto::SuspendTenantRequest {
            name: "tenants/paused".into(),
            reason: "unpaid".into(),
            ..Default::default()
        })
        .await
        .expect("suspend");

    let answer = should_rate_limit(
        server,
        vec![
            descriptor(&[("tenant_id", "nobody")]),
            descriptor(&[("generic_key", "checkout")]),
            descriptor(&[("tenant_id", "paused")]),
            descriptor(&[("tenant_id", "boundless"), ("resource", "mesages_per_day")]),
            descriptor(&[("tenant_id", "boundless")]),
            descriptor(&[("tenant_id", "Not A Slug")]),
        ],
        1_000_000,
    )
    .await;

    assert_eq!(answer.overall_code, Code::Ok as i32);
    assert_eq!(answer.statuses.len(), 6);
    for status in &answer.statuses {
        assert_eq!(status.code, Code::Ok as i32, "{status:?}");
        assert_eq!(status.current_limit, None, "{status:?}");
    }
    // Unlimited is still counted, so usage reports stay true.
    assert_eq!(
        used(server, "boundless").await["api_calls_per_minute"],
        1_000_000
    );
}
