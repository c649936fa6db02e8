//! The messages service: projects and their messages in the sample tenant schema, every call
//! inside the tenant [`TenantLayer`] admitted and nowhere else.
//!
//! Each handler takes the tenant from [`TenantContext::current`], opens [`TenantDb::begin`]
//! (the only way to reach the data, already inside the tenant's schema, rows or database) and
//! commits. `PostMessage` consumes one unit of `messages_per_day` through [`Quotas`] before it
//! inserts, so a denial (`RESOURCE_EXHAUSTED`) stores nothing.
//!
//! Also compiled into the integration test (`tests/api/example_messages.rs`).

use std::{future::Future, sync::Arc};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    prelude::DateTimeWithTimeZone,
};
use tenant_plane::client::{self, Quotas, TenantContext, TenantDb, TenantLayer, TenantResolver};
use tenant_plane::proto::examples::messages::v1::{
    self as api,
    messages_service_server::{MessagesService, MessagesServiceServer},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Server};
use uuid::Uuid;

/// The quota each posted message consumes one unit of.
pub const MESSAGES_PER_DAY: &str = "messages_per_day";
/// Messages listed when the request asks for no particular number.
const DEFAULT_PAGE_SIZE: u64 = 100;
/// The most messages one page lists.
const MAX_PAGE_SIZE: u64 = 1000;
/// The longest title and email the sample schema's columns hold.
const MAX_TITLE: usize = 500;
const MAX_EMAIL: usize = 320;

/// The sample tenant schema's tables, as this service declares them: unqualified, since the
/// transaction runs inside the tenant's schema.
mod users {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub name: Option<String>,
        pub created_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod projects {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub owner_id: Uuid,
        pub title: String,
        pub created_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

mod messages {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub project_id: Uuid,
        pub body: String,
        pub created_at: DateTimeWithTimeZone,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The service. Cheap to clone: clones share the pool and the quota client.
#[derive(Clone)]
pub struct Messages {
    db: Arc<TenantDb>,
    quotas: Quotas,
}

impl Messages {
    pub fn new(db: Arc<TenantDb>, quotas: Quotas) -> Self {
        Self { db, quotas }
    }
}

/// Serves `messages` on `listener` behind a [`TenantLayer`] until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    resolver: TenantResolver,
    messages: Messages,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(TenantLayer::new(resolver))
        .add_service(MessagesServiceServer::new(messages))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[tonic::async_trait]
impl MessagesService for Messages {
    async fn create_project(
        &self,
        request: Request<api::CreateProjectRequest>,
    ) -> Result<Response<api::Project>, Status> {
        let tenant = current()?;
        let request = request.into_inner();
        let title = request.title.trim();
        if title.is_empty() || title.chars().count() > MAX_TITLE {
            return Err(Status::invalid_argument("title: 1 to 500 characters"));
        }
        let email = request.owner_email.trim().to_lowercase();
        if !email.contains('@') || email.chars().count() > MAX_EMAIL {
            return Err(Status::invalid_argument("owner_email: an email address"));
        }

        let txn = self.db.begin(&tenant).await?;
        let owner = users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&txn)
            .await
            .map_err(db)?;
        let owner = match owner {
            Some(user) => user.id,
            None => {
                users::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    email: Set(email),
                    name: Set(None),
                    ..Default::default()
                }
                .insert(&txn)
                .await
                .map_err(db)?
                .id
            }
        };
        let project = projects::ActiveModel {
            id: Set(Uuid::now_v7()),
            owner_id: Set(owner),
            title: Set(title.to_owned()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(db)?;
        txn.commit().await?;
        Ok(Response::new(api::Project {
            id: project.id.to_string(),
            title: project.title,
            owner_id: project.owner_id.to_string(),
            create_time: Some(timestamp(project.created_at)),
        }))
    }

    async fn post_message(
        &self,
        request: Request<api::PostMessageRequest>,
    ) -> Result<Response<api::Message>, Status> {
        let tenant = current()?;
        let request = request.into_inner();
        let project_id = uuid(&request.project_id, "project_id")?;
        if request.body.trim().is_empty() {
            return Err(Status::invalid_argument("body: not empty"));
        }
        let request_id = match request.request_id.as_str() {
            "" => None,
            text => Some(uuid(text, "request_id")?),
        };

        let txn = self.db.begin(&tenant).await?;
        project_exists(&txn, project_id).await?;
        // Counted before the insert: a denial leaves the transaction to roll back unused.
        self.quotas
            .consume(&tenant, MESSAGES_PER_DAY, 1, request_id)
            .await?;
        let message = messages::ActiveModel {
            project_id: Set(project_id),
            body: Set(request.body),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(db)?;
        txn.commit().await?;
        Ok(Response::new(message.into()))
    }

    async fn list_messages(
        &self,
        request: Request<api::ListMessagesRequest>,
    ) -> Result<Response<api::ListMessagesResponse>, Status> {
        let tenant = current()?;
        let request = request.into_inner();
        let project_id = uuid(&request.project_id, "project_id")?;
        let page_size = match u64::try_from(request.page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) => size.min(MAX_PAGE_SIZE),
            Err(_) => return Err(Status::invalid_argument("page_size: not negative")),
        };
        // The token is the id of the last message listed.
        let after = match request.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<i64>()
                .map_err(|_| Status::invalid_argument("page_token: not from ListMessages"))?,
        };

        let txn = self.db.begin(&tenant).await?;
        project_exists(&txn, project_id).await?;
        let mut rows = messages::Entity::find()
            .filter(messages::Column::ProjectId.eq(project_id))
            .filter(messages::Column::Id.gt(after))
            .order_by_asc(messages::Column::Id)
            .limit(page_size + 1)
            .all(&txn)
            .await
            .map_err(db)?;
        txn.commit().await?;
        let more = rows.len() as u64 > page_size;
        rows.truncate(rows.len().min(page_size as usize));
        let next_page_token = match rows.last() {
            Some(last) if more => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(api::ListMessagesResponse {
            messages: rows.into_iter().map(api::Message::from).collect(),
            next_page_token,
        }))
    }
}

impl From<messages::Model> for api::Message {
    fn from(message: messages::Model) -> Self {
        Self {
            id: message.id,
            project_id: message.project_id.to_string(),
            body: message.body,
            create_time: Some(timestamp(message.created_at)),
        }
    }
}

/// The tenant [`TenantLayer`] admitted for this request.
fn current() -> Result<TenantContext, Status> {
    TenantContext::current().ok_or_else(|| client::Error::NoTenant.into())
}

/// `NOT_FOUND` unless the tenant has the project. Another tenant's project is not seen at all,
/// so it is not found either.
async fn project_exists(txn: &client::TenantTxn, id: Uuid) -> Result<(), Status> {
    match projects::Entity::find_by_id(id)
        .one(txn)
        .await
        .map_err(db)?
    {
        Some(_) => Ok(()),
        None => Err(Status::not_found(format!("no project {id}"))),
    }
}

fn uuid(text: &str, field: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text.trim())
        .map_err(|_| Status::invalid_argument(format!("{field}: a UUID, not '{text}'")))
}

/// A database failure, answered as the client library answers it.
fn db(error: DbErr) -> Status {
    client::Error::from(error).into()
}

fn timestamp(at: DateTimeWithTimeZone) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}
