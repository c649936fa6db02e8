//! Where the accepted tokens come from: the configuration, or the first start's admin token.

use super::{AuthSettings, Role, TokenSet, hash_token, new_token};
use crate::app::StartError;
use crate::store::{Catalog, StoredToken};

/// The name of the admin token made at the first start.
const BOOTSTRAP_NAME: &str = "bootstrap-admin";

/// The file in the data directory the first start's admin token is written to when stderr is
/// not a terminal (a container's log keeps what it is sent for as long as the container).
pub const ADMIN_TOKEN_FILE: &str = "bootstrap-admin-token";

/// Writes `token` to [`ADMIN_TOKEN_FILE`] in `data_dir`, readable and writable only by this
/// process's user (mode 0600, made so at creation: no moment with wider permissions), replacing
/// a file left by an earlier start. Returns its path.
pub fn save_admin_token(
    data_dir: &std::path::Path,
    token: &str,
) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(token.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    Ok(path)
}

/// The accepted tokens, and the admin token made by this start, to show once.
#[derive(Debug)]
pub struct Bootstrapped {
    pub tokens: TokenSet,
    pub new_admin_token: Option<String>,
}

/// Reads the configured tokens. With none configured, the catalog's generated tokens are the
/// accepted ones; with none there either, an admin token is made and stored by hash. Configuring
/// tokens retires the generated one.
pub async fn load_tokens(
    settings: &AuthSettings,
    catalog: &Catalog,
) -> Result<Bootstrapped, StartError> {
    let mut tokens = TokenSet::parse(
        settings.auth_tokens.iter().map(String::as_str),
        "TENANT_PLANE_AUTH_TOKENS",
    )
    .map_err(StartError::Config)?;
    if let Some(path) = &settings.auth_tokens_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StartError::Config(format!(
                "TENANT_PLANE_AUTH_TOKENS_FILE {}: {e}",
                path.display()
            ))
        })?;
        let origin = format!("TENANT_PLANE_AUTH_TOKENS_FILE {}", path.display());
        tokens
            .add_entries(text.lines(), &origin)
            .map_err(StartError::Config)?;
    }
    if !tokens.is_empty() {
        tracing::info!(tokens = tokens.len(), "bearer tokens configured");
        return Ok(Bootstrapped {
            tokens,
            new_admin_token: None,
        });
    }
    let mut stored = catalog.auth_tokens().await?;
    let mut new_admin_token = None;
    if stored.is_empty() {
        let token = new_token()?;
        let row = StoredToken {
            name: BOOTSTRAP_NAME.to_owned(),
            role: Role::Admin.as_str().to_owned(),
            token_hash: hash_token(&token),
        };
        if catalog.insert_auth_token_once(&row).await? {
            tracing::warn!(
                name = BOOTSTRAP_NAME,
                "no bearer tokens configured: created an admin token (shown once at start: on stderr if it is a terminal, else in the data directory's bootstrap-admin-token file)"
            );
            new_admin_token = Some(token);
            // Only this function stores tokens, always under BOOTSTRAP_NAME: the catalog, empty
            // when read above, now holds just this one.
            stored = vec![row];
        } else {
            // Another replica won the race; its token is the one.
            stored = catalog.auth_tokens().await?;
        }
    }
    for token in &stored {
        let role = Role::parse(&token.role).ok_or_else(|| {
            StartError::Config(format!(
                "auth token {} in the catalog has an unknown role",
                token.name
            ))
        })?;
        tokens
            .insert(role, &token.name, &token.token_hash)
            .map_err(|why| StartError::Config(format!("auth token {}: {why}", token.name)))?;
    }
    Ok(Bootstrapped {
        tokens,
        new_admin_token,
    })
}
