//! `prime certs init`: a small certificate authority with one server certificate (for the
//! coordinator's host names and addresses) and one client certificate (for mutual TLS of
//! workers and `prime`), for clusters without a CA of their own.

use anyhow::Context;
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Most host names on one server certificate.
const MAX_HOSTS: usize = 64;

/// Certificate commands.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write ca.pem, ca.key, server.pem, server.key, client.pem and client.key into a new
    /// directory.
    Init(InitArgs),
}

/// Arguments of `prime certs init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create (it must not hold certificates already).
    #[arg(long)]
    pub out: PathBuf,
    /// A DNS name or IP address clients use to reach the coordinator (repeat for several).
    #[arg(long = "host", required = true)]
    pub hosts: Vec<String>,
}

/// The files `init` writes, with whether each is secret.
const FILES: [(&str, bool); 6] = [
    ("ca.pem", false),
    ("ca.key", true),
    ("server.pem", false),
    ("server.key", true),
    ("client.pem", false),
    ("client.key", true),
];

fn ca() -> anyhow::Result<(Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, "darts-prime cluster CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok((params.self_signed(&key)?, key))
}

fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &(Certificate, KeyPair),
) -> anyhow::Result<(Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    Ok((params.signed_by(&key, &ca.0, &ca.1)?, key))
}

fn write_file(dir: &Path, name: &str, text: &str, secret: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Checks the hosts and that `out` holds none of the files; creates `out`.
fn prepare(args: &InitArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.hosts.len() <= MAX_HOSTS,
        "--host given {} times; at most {MAX_HOSTS}",
        args.hosts.len()
    );
    for host in &args.hosts {
        anyhow::ensure!(
            !host.is_empty()
                && host.len() <= 253
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*')),
            "--host `{}` is not a DNS name or IP address",
            host.escape_debug()
        );
    }
    for (name, _) in FILES {
        let path = args.out.join(name);
        anyhow::ensure!(
            !path.exists(),
            "{} exists already; choose another --out or remove the old certificates first",
            path.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create --out {}", args.out.display()))
}

/// Runs `prime certs init`.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    prepare(args)?;
    let authority = ca()?;
    let server = leaf(
        args.hosts.clone(),
        &args.hosts[0],
        ExtendedKeyUsagePurpose::ServerAuth,
        &authority,
    )?;
    let client = leaf(
        Vec::new(),
        "darts-prime client",
        ExtendedKeyUsagePurpose::ClientAuth,
        &authority,
    )?;
    let texts = [
        authority.0.pem(),
        authority.1.serialize_pem(),
        server.0.pem(),
        server.1.serialize_pem(),
        client.0.pem(),
        client.1.serialize_pem(),
    ];
    for ((name, secret), text) in FILES.iter().zip(texts) {
        write_file(&args.out, name, &text, *secret)?;
    }
    println!(
        "wrote {} (server certificate for {}); keep ca.key offline",
        FILES
            .iter()
            .map(|(name, _)| args.out.join(name).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.hosts.join(", ")
    );
    Ok(())
}

/// Runs a certificate command.
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => init(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_writes_pem_files_with_private_keys_closed_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let args = InitArgs {
            out: dir.path().join("certs"),
            hosts: vec!["head-node".into(), "127.0.0.1".into()],
        };
        init(&args).unwrap();
        for (name, secret) in FILES {
            let path = args.out.join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("-----BEGIN "), "{name}");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if secret {
                assert_eq!(mode, 0o600, "{name}");
            }
        }
        let again = init(&args).unwrap_err().to_string();
        assert!(again.contains("exists already"), "{again}");
    }

    #[test]
    fn hosts_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let args = InitArgs {
            out: dir.path().join("c"),
            hosts: vec!["bad host\u{1b}".into()],
        };
        let error = init(&args).unwrap_err().to_string();
        assert!(error.contains("not a DNS name or IP address"), "{error}");
        assert!(!args.out.exists());
    }
}
