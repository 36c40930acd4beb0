//! `sluice analyst`: who may connect to the analyst SQL endpoint. The registry
//! keeps each analyst's SCRAM-SHA-256 verifier under `[analytics.analysts]`,
//! never a password; these commands write and remove them, keeping the file's
//! comments and layout.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use sluice_analytics::analyst::auth::Verifier;

/// A password shorter than this is refused (PostgreSQL sets no minimum; a
/// warehouse of every service's events deserves one).
const MIN_PASSWORD: usize = 8;

/// Where the password of `sluice analyst add` comes from.
pub enum PasswordFrom {
    /// Asked twice on the terminal, not echoed.
    Prompt,
    /// The first line of standard input (scripts, CI, secret stores).
    Stdin,
}

/// `sluice analyst add <name>`: the verifier of a new password for `name`,
/// written into the registry file (or only printed, for `SLUICE_ANALYSTS`).
pub fn add(registry: &Path, name: &str, from: PasswordFrom, print: bool) -> anyhow::Result<()> {
    check_name(name)?;
    let password = read_password(name, from)?;
    let verifier = Verifier::new(&password).to_string();
    if print {
        println!("{name}={verifier}");
        return Ok(());
    }
    let mut document = load(registry)?;
    let analysts = analysts_table(&mut document, registry)?;
    let replaced = analysts.contains_key(name);
    analysts.insert(name, toml_edit::value(verifier));
    save(registry, &document)?;
    println!(
        "{} analyst `{name}` in {} (a SCRAM-SHA-256 verifier); restart the analytics component to apply",
        if replaced { "replaced the password of" } else { "added" },
        registry.display()
    );
    Ok(())
}

/// `sluice analyst remove <name>`.
pub fn remove(registry: &Path, name: &str) -> anyhow::Result<()> {
    let mut document = load(registry)?;
    let analysts = analysts_table(&mut document, registry)?;
    if analysts.remove(name).is_none() {
        bail!(
            "no analyst `{name}` under [analytics.analysts] in {}",
            registry.display()
        );
    }
    save(registry, &document)?;
    println!(
        "removed analyst `{name}` from {}; restart the analytics component to apply",
        registry.display()
    );
    Ok(())
}

/// `sluice analyst list`: names only (verifiers are not for display).
pub fn list(registry: &Path) -> anyhow::Result<()> {
    let mut document = load(registry)?;
    let analysts = analysts_table(&mut document, registry)?;
    for (name, value) in analysts.iter() {
        let kind = match value.as_str().map(str::parse::<Verifier>) {
            Some(Ok(_)) => "SCRAM-SHA-256",
            _ => "not a verifier: the endpoint will refuse to start",
        };
        println!("{name}\t{kind}");
    }
    Ok(())
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        bail!("`{name}` is not an analyst name: 1 to 63 of ASCII letters, digits, `_`, `-`, `.`");
    }
    Ok(())
}

fn read_password(name: &str, from: PasswordFrom) -> anyhow::Result<String> {
    let password = match from {
        PasswordFrom::Stdin => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
        PasswordFrom::Prompt => {
            if !std::io::stdin().is_terminal() {
                bail!("no terminal to ask for the password on: pass --password-stdin and write it to standard input");
            }
            let first = rpassword::prompt_password(format!("password for analyst `{name}`: "))?;
            let again = rpassword::prompt_password("again: ")?;
            if first != again {
                bail!("the two passwords differ; nothing was written");
            }
            first
        }
    };
    if password.chars().count() < MIN_PASSWORD {
        bail!("the password is shorter than {MIN_PASSWORD} characters; nothing was written");
    }
    Ok(password)
}

fn load(registry: &Path) -> anyhow::Result<toml_edit::DocumentMut> {
    let text = std::fs::read_to_string(registry)
        .with_context(|| format!("reading {}", registry.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", registry.display()))
}

fn analysts_table<'a>(
    document: &'a mut toml_edit::DocumentMut,
    registry: &Path,
) -> anyhow::Result<&'a mut toml_edit::Table> {
    let analytics = document
        .get_mut("analytics")
        .and_then(toml_edit::Item::as_table_mut)
        .ok_or_else(|| anyhow!("{} has no [analytics] section", registry.display()))?;
    if !analytics.contains_key("analysts") {
        analytics.insert("analysts", toml_edit::Item::Table(toml_edit::Table::new()));
    }
    analytics
        .get_mut("analysts")
        .and_then(toml_edit::Item::as_table_mut)
        .ok_or_else(|| {
            anyhow!(
                "[analytics].analysts in {} is not a table",
                registry.display()
            )
        })
}

/// Writes through a temporary file renamed over the original, so a crash leaves
/// the old registry or the new one, never half of one.
fn save(registry: &Path, document: &toml_edit::DocumentMut) -> anyhow::Result<()> {
    let tmp = registry.with_extension("toml.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(document.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, registry).with_context(|| format!("replacing {}", registry.display()))?;
    Ok(())
}
