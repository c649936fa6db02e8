//! tenant.v1.MembershipService: decode the request, call one use case, encode the answer.

use tonic::{Request, Response, Status};

use super::context::call_context;
use super::{convert, request_key};
use crate::domain::{Error, FieldViolation, Member, Role};
use crate::proto::{self, member, membership_service_server::MembershipService};
use crate::service::{AddMemberInput, Members, parse_etag};

pub struct MemberApi {
    members: Members,
}

impl MemberApi {
    pub fn new(members: Members) -> Self {
        Self { members }
    }
}

type Reply<T> = Result<Response<T>, Status>;

const OUTPUT_ONLY: &[&str] = &["name", "join_time", "update_time", "etag"];
const IMMUTABLE: &[&str] = &["user_id"];

fn role(r: Role) -> member::Role {
    match r {
        Role::Owner => member::Role::Owner,
        Role::Admin => member::Role::Admin,
        Role::Member => member::Role::Member,
    }
}

/// A role sent by a caller: `Ok(None)` for ROLE_UNSPECIFIED, `Err` for a number that is no role.
fn role_from_wire(value: i32) -> Result<Option<Role>, String> {
    match member::Role::try_from(value) {
        Ok(member::Role::Unspecified) => Ok(None),
        Ok(member::Role::Owner) => Ok(Some(Role::Owner)),
        Ok(member::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(member::Role::Member) => Ok(Some(Role::Member)),
        Err(_) => Err(format!("{value} is not a role")),
    }
}

/// A role the request requires: ROLE_UNSPECIFIED and unknown numbers are refused.
fn required_role(value: i32, field: &str, violations: &mut Vec<FieldViolation>) -> Option<Role> {
    match role_from_wire(value) {
        Ok(Some(role)) => Some(role),
        Ok(None) => {
            violations.push(FieldViolation::new(
                field,
                "is required: ROLE_OWNER, ROLE_ADMIN or ROLE_MEMBER",
            ));
            None
        }
        Err(why) => {
            violations.push(FieldViolation::new(field, why));
            None
        }
    }
}

fn wire(m: Member) -> proto::Member {
    proto::Member {
        name: m.name(),
        role: role(m.role) as i32,
        etag: m.etag().to_string(),
        join_time: Some(convert::timestamp(m.join_time)),
        update_time: Some(convert::timestamp(m.update_time)),
        user_id: m.user_id.to_string(),
    }
}

#[tonic::async_trait]
impl MembershipService for MemberApi {
    async fn add_member(&self, request: Request<proto::AddMemberRequest>) -> Reply<proto::Member> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let wanted = request.member.clone().unwrap_or_default();
        let mut violations = Vec::new();
        if request.member.is_none() {
            violations.push(FieldViolation::new("member", "is required"));
        }
        let set = [
            ("name", !wanted.name.is_empty()),
            ("join_time", wanted.join_time.is_some()),
            ("update_time", wanted.update_time.is_some()),
            ("etag", !wanted.etag.is_empty()),
        ];
        for (field, _) in set.iter().filter(|(_, is_set)| *is_set) {
            violations.push(FieldViolation::new(
                format!("member.{field}"),
                "is output only and must not be set",
            ));
        }
        let role = required_role(wanted.role, "member.role", &mut violations);
        let request_key = request_key(&request.request_id, &request)
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        let input = AddMemberInput {
            parent: request.parent,
            user_id: wanted.user_id,
            role,
            request: request_key,
            violations,
        };
        Ok(Response::new(wire(self.members.add(&ctx, input).await?)))
    }

    async fn get_member(&self, request: Request<proto::GetMemberRequest>) -> Reply<proto::Member> {
        let member = self.members.get(&request.get_ref().name).await?;
        Ok(Response::new(wire(member)))
    }

    async fn list_members(
        &self,
        request: Request<proto::ListMembersRequest>,
    ) -> Reply<proto::ListMembersResponse> {
        let request = request.into_inner();
        let mut violations = Vec::new();
        let role = role_from_wire(request.role)
            .map_err(|why| violations.push(FieldViolation::new("role", why)))
            .ok()
            .flatten();
        let (members, next_page_token) = self
            .members
            .list(
                &request.parent,
                role,
                request.page_size,
                &request.page_token,
                violations,
            )
            .await?;
        Ok(Response::new(proto::ListMembersResponse {
            members: members.into_iter().map(wire).collect(),
            next_page_token,
        }))
    }

    async fn update_member(
        &self,
        request: Request<proto::UpdateMemberRequest>,
    ) -> Reply<proto::Member> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let Some(wanted) = request.member else {
            return Err(Error::invalid("member", "is required").into());
        };
        let mut paths: Vec<String> = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() && wanted.role != 0 {
            // AIP-134: without a mask, the mutable fields the caller populated.
            paths.push("role".into());
        }
        let mut violations = Vec::new();
        if paths.is_empty() {
            violations.push(FieldViolation::new(
                "update_mask",
                "names no field to change",
            ));
        }
        let mut role = None;
        for path in &paths {
            match path.as_str() {
                "role" | "*" => role = required_role(wanted.role, "member.role", &mut violations),
                p => violations.push(super::bad_mask_path(p, OUTPUT_ONLY, IMMUTABLE, "Member")),
            }
        }
        let etag = parse_etag(&wanted.etag, "member.etag")
            .map_err(|e| violations.extend(e.into_violations()))
            .ok()
            .flatten();
        Error::check(violations)?;
        let Some(role) = role else {
            return Err(Error::Internal("validated role is missing".into()).into());
        };
        let member = self
            .members
            .set_role(&ctx, &wanted.name, role, etag)
            .await?;
        Ok(Response::new(wire(member)))
    }

    async fn remove_member(&self, request: Request<proto::RemoveMemberRequest>) -> Reply<()> {
        let ctx = call_context(&request);
        let request = request.into_inner();
        let etag = parse_etag(&request.etag, "etag")?;
        self.members.remove(&ctx, &request.name, etag).await?;
        Ok(Response::new(()))
    }

    async fn list_tenants_for_user(
        &self,
        request: Request<proto::ListTenantsForUserRequest>,
    ) -> Reply<proto::ListTenantsForUserResponse> {
        let request = request.into_inner();
        let (found, next_page_token) = self
            .members
            .tenants_of_user(
                &request.user_id,
                request.show_deleted,
                request.page_size,
                &request.page_token,
            )
            .await?;
        let memberships = found
            .into_iter()
            .map(|(tenant, member)| proto::TenantMembership {
                tenant: tenant.name(),
                slug: tenant.slug.to_string(),
                state: convert::state(tenant.state) as i32,
                role: role(member.role) as i32,
                member: member.name(),
            })
            .collect();
        Ok(Response::new(proto::ListTenantsForUserResponse {
            memberships,
            next_page_token,
        }))
    }
}
