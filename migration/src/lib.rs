//! Schema history of tenant-plane.
//!
//! * [`catalog`] — the public catalog: tenants, plans and idempotency records. Applied at
//!   start-up by the control plane, under a lock so concurrent replicas apply it once.
//! * [`tenant`] — what each tenant's schema or database holds; applied tenant by tenant.
//!
//! A migration is history: it never imports the application's entities, which describe today.

pub mod catalog;
pub mod tenant;

pub use sea_orm_migration;
