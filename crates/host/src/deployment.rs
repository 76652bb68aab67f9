//! The rule for deployment names, shared by the server and the governor: each is a directory
//! under `<root>/deployments/`, so a name must be a plain directory name.

/// `Ok` for a valid deployment name; otherwise the message saying what a name may be.
pub fn check_deployment_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a deployment name: use letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_deployment_name;

    #[test]
    fn plain_directory_names_only() {
        for ok in ["default", "prod-1", "a_b.c"] {
            assert!(check_deployment_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "x y", &"n".repeat(65)] {
            assert!(check_deployment_name(bad).is_err(), "{bad}");
        }
    }
}
