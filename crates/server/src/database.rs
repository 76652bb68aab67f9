//! Database URLs: ours (`sqlite://PATH`, a bare path) and the original's SQLAlchemy spellings
//! (`sqlite+aiosqlite:///relative.db`, `sqlite+aiosqlite:////absolute.db`,
//! `postgresql+asyncpg://…`), ../shared/COMPAT.md §4.

use std::path::{Path, PathBuf};

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Reads a database URL; relative SQLite paths are taken from `base` (the deployment's directory).
pub fn parse(url: &str, base: &Path) -> Result<Database, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the database URL is empty".into());
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), Some(r)),
        None => (String::new(), None),
    };
    let scheme_base = scheme.split('+').next().unwrap_or("");
    match (scheme_base, rest) {
        ("", _) => Ok(Database::Sqlite(base.join(url))),
        ("sqlite", Some(rest)) => {
            // SQLAlchemy: `sqlite:///rel.db` is relative, `sqlite:////abs.db` absolute; ours,
            // `sqlite://rel.db` and `sqlite:///abs.db`… overlap only on the three-slash form,
            // which both read as "path after the third slash", so: strip one leading slash when
            // a second follows (`//abs` → `/abs`), else a relative path.
            let path = match rest.strip_prefix('/') {
                Some(after) if after.starts_with('/') => PathBuf::from(after),
                Some(after) => base.join(after),
                None => base.join(rest),
            };
            let path = PathBuf::from(path.to_string_lossy().split('?').next().unwrap_or_default());
            if path.as_os_str().is_empty() || path == base {
                return Err(format!("the database URL '{url}' names no file"));
            }
            Ok(Database::Sqlite(path))
        }
        ("postgres" | "postgresql", Some(_)) => Ok(Database::Postgres(url.to_string())),
        _ => Err(format!(
            "unsupported database URL '{url}': use sqlite://PATH (or a plain path) or postgres://…"
        )),
    }
}

/// A database URL fit for messages and logs: its password replaced by `***`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_spellings_and_the_originals_are_read() {
        let base = Path::new("/srv/deployments/default");
        let sqlite = |p: &str| Ok(Database::Sqlite(PathBuf::from(p)));
        assert_eq!(parse("schedulezero.db", base), sqlite("/srv/deployments/default/schedulezero.db"));
        assert_eq!(
            parse("sqlite+aiosqlite:///relative.db", base),
            sqlite("/srv/deployments/default/relative.db")
        );
        assert_eq!(parse("sqlite+aiosqlite:////abs/path.db", base), sqlite("/abs/path.db"));
        assert_eq!(parse("sqlite://data/s.db", base), sqlite("/srv/deployments/default/data/s.db"));
        assert_eq!(parse("SQLITE:////tmp/x.db?mode=rwc", base), sqlite("/tmp/x.db"));
        assert!(matches!(parse("postgresql+asyncpg://u@h/db", base), Ok(Database::Postgres(_))));
        assert_eq!(redacted("postgres://u:s3cr@t@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert!(parse("mysql://x", base).unwrap_err().contains("unsupported"));
        assert!(parse("", base).is_err());
    }
}
