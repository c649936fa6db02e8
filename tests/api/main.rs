//! Integration tests: the real server, real sockets, real SQLite and PostgreSQL.

mod support;

mod cli;
mod platform;
mod provisioning;
mod purge_job;
mod rollout_crashes;
mod rollouts;
mod tenant_bad_input;
mod tenant_change_refusals;
mod tenant_lifecycle;
mod tenant_list;
