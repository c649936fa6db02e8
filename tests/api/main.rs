//! Integration tests: the real server, real sockets, real SQLite and PostgreSQL.

mod support;

mod api_keys;
mod cache;
mod cli;
mod client;
mod client_axum;
mod client_layer;
mod envoy;
mod example_messages;
mod members;
mod members_refusals;
mod members_users;
mod migrations;
mod migrations_failures;
mod plans;
mod plans_refusals;
mod plans_upsert;
mod platform;
mod provisioning;
mod provisioning_failures;
mod provisioning_postgres;
mod provisioning_status;
mod purge_job;
mod quota_refusals;
mod quotas;
mod rollout_crashes;
mod rollouts;
mod shared_isolation;
mod tenant_bad_input;
mod tenant_change_refusals;
mod tenant_lifecycle;
mod tenant_list;
