//! sea-orm entities of the catalog tables (see `migration::catalog` for their history).

pub mod plan;
pub mod request_id;
pub mod tenant;
