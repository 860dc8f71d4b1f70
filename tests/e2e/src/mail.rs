//! Real mail servers for the e-mail tests, on free loopback ports: Debian's Dovecot as the
//! IMAP server (scripts/test installs it) and aiosmtpd (Python, in a virtualenv under
//! `target/`) as the SMTP server replies are delivered to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Services, TestEnv, free_port, python_venv};

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}; see {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An SMTP server that stores what it accepts (`tests/e2e/python/smtp_sink.py`) and refuses
/// recipients whose local part starts with `reject`.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// One message the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub rcpt_to: Vec<String>,
    pub raw: Vec<u8>,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> Self {
        let python = python_venv("mail-venv", &Path::new(env!("CARGO_MANIFEST_DIR")).join("python/requirements.txt"));
        let port = free_port();
        let log = dir.join("smtp-sink.log");
        let child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/smtp_sink.py"))
            .args(["127.0.0.1", &port.to_string()])
            .arg(dir.join("received"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sink log"))
            .spawn()
            .expect("starting the SMTP sink");
        wait_for_port(port, "the SMTP sink", &log);
        Self { port, dir: dir.join("received"), child }
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "eml")).collect())
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .filter_map(|eml| {
                let envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(eml.with_extension("json")).ok()?).ok()?;
                let rcpt_to = envelope["rcpt_tos"].as_array()?.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect();
                Some(Received { rcpt_to, raw: std::fs::read(&eml).ok()? })
            })
            .collect()
    }
}

impl SmtpSink {
    /// Waits (up to 90 s) for a message to `recipient` whose subject contains `subject`.
    pub async fn delivered(&self, recipient: &str, subject: &str) -> Received {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(r) = self.delivered_now(recipient, subject) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "no mail to {recipient} about {subject:?}; received: {:?}", self.received());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message so far to `recipient` whose subject contains `subject`.
    pub fn all_delivered(&self, recipient: &str, subject: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| {
                let parsed = mail_parser::MessageParser::default().parse(&r.raw);
                r.rcpt_to.iter().any(|t| t == recipient) && parsed.is_some_and(|m| m.subject().is_some_and(|s| s.contains(subject)))
            })
            .collect()
    }

    pub fn delivered_now(&self, recipient: &str, subject: &str) -> Option<Received> {
        self.all_delivered(recipient, subject).into_iter().next()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dovecot serving IMAP on a free loopback port, one user (`support`), mail in a maildir.
pub struct Dovecot {
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub const DOVECOT: &str = "/usr/sbin/dovecot";

impl Dovecot {
    pub fn start() -> Self {
        assert!(Path::new(DOVECOT).exists(), "{DOVECOT} is missing: scripts/test installs Debian's dovecot-imapd (apt-get install dovecot-imapd)");
        // Outside target/: the mail user must be able to reach the maildir, and Dovecot's
        // sockets need a short path.
        let dir = tempfile::Builder::new().prefix("sb-dovecot-").tempdir().expect("dovecot dir");
        let root = dir.path();
        set_mode(root, 0o755);
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir(root.join(sub)).expect("dovecot dir");
        }
        set_mode(&root.join("mail"), 0o1777);
        let (user, password) = ("support".to_owned(), "secret".to_owned());
        std::fs::write(root.join("passwd"), format!("{user}:{{PLAIN}}{password}\n")).expect("passwd");
        set_mode(&root.join("passwd"), 0o644);
        let port = free_port();
        // As root, Dovecot's own unprivileged users run the logins and `nobody` owns the
        // mail; as anyone else, everything runs as that user.
        let me = current_user();
        let (login_user, internal_user, mail_uid, mail_gid) = if me == "root" {
            ("dovenull".to_owned(), "dovecot".to_owned(), "nobody".to_owned(), "nogroup".to_owned())
        } else {
            (me.clone(), me.clone(), me.clone(), current_group())
        };
        let root_s = root.display();
        let config = format!(
            r"protocols = imap
listen = 127.0.0.1
base_dir = {root_s}/run
state_dir = {root_s}/state
log_path = {root_s}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root_s}/mail/%u
first_valid_uid = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root_s}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root_s}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"
        );
        std::fs::write(root.join("dovecot.conf"), config).expect("dovecot.conf");
        let log = root.join("dovecot.log");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dovecot.stderr")).expect("dovecot stderr"))
            .spawn()
            .expect("starting dovecot");
        wait_for_port(port, "Dovecot", &log);
        Self { port, user, password, dir, child }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its children too (SIGKILL would orphan them).
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map_or_else(|| "root".into(), |u| u.name)
}

fn current_group() -> String {
    nix::unistd::Group::from_gid(nix::unistd::getgid()).ok().flatten().map_or_else(|| "root".into(), |g| g.name)
}

/// UCS and the e-mail service with its SMTP listener, each its own process, both ready.
pub struct MailIntake {
    pub ucs_port: u16,
    pub smtp_port: u16,
    _services: [Services; 2],
}

/// Starts UCS, then the e-mail service pointed at it, with `settings` as the test set them.
pub async fn start_mail_intake(env: &TestEnv, settings: &mut switchboard::settings::Settings) -> MailIntake {
    let (ucs_port, smtp_port) = (free_port(), free_port());
    let ucs = env.spawn_services(settings, &[("ucs", ucs_port)]);
    settings.email.ucs_url = Some(format!("http://127.0.0.1:{ucs_port}"));
    settings.email.smtp_listen = Some(([127, 0, 0, 1], smtp_port).into());
    let email = env.spawn_services(settings, &[("email", free_port())]);
    crate::desk::wait_ready(&crate::http(), &ucs.url("ucs", "/health/ready/ucs")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", smtp_port)).await.is_err() {
        assert!(Instant::now() < deadline, "SMTP listener did not start; see {}", env.dir.path().join("email.log").display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    MailIntake { ucs_port, smtp_port, _services: [ucs, email] }
}
