//! A component's migrations as a directory of SQL files, the way an application keeps them
//! beside its code:
//!
//! ```text
//! 0001_create_invoices.up.sql           required: PostgreSQL, applies the migration
//! 0001_create_invoices.down.sql         optional: PostgreSQL, reverts it
//! 0001_create_invoices.up.sqlite.sql    optional: SQLite (the embedded mode)
//! 0001_create_invoices.down.sqlite.sql  optional
//! ```
//!
//! The version is the name before the suffix (`0001_create_invoices`); the description is the
//! text of a first line `-- description: ...` of the up file. Any other name is an error naming
//! the file, so a typo (`0002_x.sql`, `0002_x.up.sq`) is never silently left out of the history.
//! Hidden files (`.gitkeep`) are skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One migration read from the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalMigration {
    pub version: String,
    pub description: String,
    pub up_sql: String,
    pub down_sql: String,
    pub sqlite_up_sql: String,
    pub sqlite_down_sql: String,
    /// The up file's name, for messages.
    pub up_file: String,
}

/// Why a directory could not be read as migrations.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{name}: not a migration file; expected NNNN_name.up.sql, NNNN_name.down.sql, \
         NNNN_name.up.sqlite.sql or NNNN_name.down.sqlite.sql (NNNN digits, name of a-z, 0-9 \
         and '_')"
    )]
    UnknownFile { name: String },
    #[error("{name}: has no {version}.up.sql beside it")]
    WithoutUp { name: String, version: String },
    #[error("{name}: is not UTF-8 text")]
    NotText { name: String },
    #[error("{}: holds no migrations (NNNN_name.up.sql files)", .0.display())]
    Empty(PathBuf),
}

/// The four kinds of file, longest suffix first so `.up.sqlite.sql` is not read as `.up.sql`
/// of a version ending in `.sqlite`.
const SUFFIXES: [(&str, Kind); 4] = [
    (".up.sqlite.sql", Kind::SqliteUp),
    (".down.sqlite.sql", Kind::SqliteDown),
    (".up.sql", Kind::Up),
    (".down.sql", Kind::Down),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Up,
    Down,
    SqliteUp,
    SqliteDown,
}

/// Reads every migration in `dir`, ordered by version.
pub fn read(dir: &Path) -> Result<Vec<LocalMigration>, DirError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DirError::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let (version, kind) =
            classify(&name).ok_or_else(|| DirError::UnknownFile { name: name.clone() })?;
        if !entry.file_type().map_err(io(&entry.path()))?.is_file() {
            return Err(DirError::UnknownFile { name });
        }
        files.push((name, version, kind, entry.path()));
    }
    let mut found: BTreeMap<String, LocalMigration> = BTreeMap::new();
    let mut without_up = Vec::new();
    for (name, version, kind, path) in files {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let text =
            String::from_utf8(bytes).map_err(|_| DirError::NotText { name: name.clone() })?;
        let m = found
            .entry(version.clone())
            .or_insert_with(|| LocalMigration {
                version: version.clone(),
                ..Default::default()
            });
        match kind {
            Kind::Up => {
                m.description = description(&text);
                m.up_sql = text;
                m.up_file = name.clone();
            }
            Kind::Down => m.down_sql = text,
            Kind::SqliteUp => m.sqlite_up_sql = text,
            Kind::SqliteDown => m.sqlite_down_sql = text,
        }
        if kind != Kind::Up {
            without_up.push((name, version));
        }
    }
    // Reported in name order, so the same directory always gives the same error.
    without_up.sort();
    for (name, version) in without_up {
        if found.get(&version).is_some_and(|m| m.up_file.is_empty()) {
            return Err(DirError::WithoutUp { name, version });
        }
    }
    if found.is_empty() {
        return Err(DirError::Empty(dir.to_path_buf()));
    }
    Ok(found.into_values().collect())
}

/// The version and kind of a migration file's name, or `None` for any other name.
fn classify(name: &str) -> Option<(String, Kind)> {
    let (version, kind) = SUFFIXES
        .iter()
        .find_map(|(suffix, kind)| name.strip_suffix(suffix).map(|v| (v, *kind)))?;
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    let rest = &version[digits..];
    let well_formed = digits > 0
        && rest.len() > 1
        && rest.starts_with('_')
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    well_formed.then(|| (version.to_owned(), kind))
}

/// The text of a first non-blank line `-- description: ...`, or empty.
fn description(up_sql: &str) -> String {
    up_sql
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .and_then(|line| line.strip_prefix("--"))
        .map(str::trim_start)
        .and_then(|line| line.strip_prefix("description:"))
        .map(|d| d.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_directory_reads_as_migrations_in_version_order() {
        let d = dir(&[
            ("0002_lines.up.sql", "CREATE TABLE lines (id int)"),
            (
                "0001_invoices.up.sql",
                "\n-- description: Invoices, one row each\nCREATE TABLE invoices (id int)",
            ),
            ("0001_invoices.down.sql", "DROP TABLE invoices"),
            (
                "0001_invoices.up.sqlite.sql",
                "CREATE TABLE invoices (id integer)",
            ),
            ("0001_invoices.down.sqlite.sql", "DROP TABLE invoices"),
            (".gitkeep", ""),
        ]);
        let read = read(d.path()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].version, "0001_invoices");
        assert_eq!(read[0].description, "Invoices, one row each");
        assert_eq!(read[0].down_sql, "DROP TABLE invoices");
        assert_eq!(read[0].sqlite_up_sql, "CREATE TABLE invoices (id integer)");
        assert_eq!(read[0].up_file, "0001_invoices.up.sql");
        assert_eq!(read[1].version, "0002_lines");
        assert_eq!(read[1].description, "");
        assert_eq!(read[1].down_sql, "");
    }

    #[test]
    fn any_other_name_and_a_down_without_its_up_are_errors_naming_the_file() {
        for name in [
            "0001_x.sql",
            "0001_x.up.sq",
            "x_0001.up.sql",
            "0001.up.sql",
            "0001_X.up.sql",
            "README.md",
        ] {
            let d = dir(&[("0000_ok.up.sql", "SELECT 1"), (name, "SELECT 1")]);
            let error = read(d.path()).unwrap_err().to_string();
            assert!(error.starts_with(name), "{name}: {error}");
        }
        let d = dir(&[
            ("0000_ok.up.sql", "SELECT 1"),
            ("0001_x.down.sql", "SELECT 1"),
        ]);
        let error = read(d.path()).unwrap_err().to_string();
        assert!(
            error.contains("0001_x.down.sql") && error.contains("0001_x.up.sql"),
            "{error}"
        );
        assert!(matches!(read(dir(&[]).path()), Err(DirError::Empty(_))));
        assert!(matches!(
            read(Path::new("/nonexistent/tenant-plane")),
            Err(DirError::Io { .. })
        ));
    }
}
