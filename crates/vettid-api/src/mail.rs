//! Outgoing mail. The API hands each message to a [`Mailer`]; the default one,
//! [`OutboxMailer`], writes it as one RFC 5322 file per message into an outbox directory,
//! where a relay (or a developer, or a test) picks it up. An SMTP mailer is not built in yet:
//! it would implement the same trait.
//!
//! Mail carries sign-in tokens, so [`Mail`] has no `Debug`, outbox files are created `0600`,
//! and nothing here logs a body.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One message. Header values must not contain CR or LF (callers pass validated values; the
/// mailer refuses them anyway).
pub struct Mail {
    /// `From:`, e.g. `VettID <no-reply@vettid.dev>`.
    pub from: String,
    /// `To:`, one address.
    pub to: String,
    /// `Subject:` (UTF-8 allowed).
    pub subject: String,
    /// Plain-text body; lines end in `\n` (converted to CRLF on the wire).
    pub body: String,
}

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A header value contains a line break (would allow header injection).
    #[error("a header value contains a line break")]
    HeaderInjection,
    /// Writing the message failed.
    #[error("writing the message: {0}")]
    Io(#[from] std::io::Error),
}

/// Delivers mail. Called from a blocking thread; implementations may block.
pub trait Mailer: Send + Sync + 'static {
    /// Hands `mail`, dated `date`, to the delivery mechanism; `Ok` once it is durably queued.
    fn send(&self, mail: &Mail, date: SystemTime) -> Result<(), MailError>;
}

/// Writes each message to `<dir>/<unix_ms>-<random>.eml`, atomically (a temporary file is
/// written, synced and renamed), readable only by the owner.
#[derive(Debug, Clone)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// An outbox in `dir` (created `0700` on first use if missing).
    pub fn new(dir: impl Into<PathBuf>) -> OutboxMailer {
        OutboxMailer { dir: dir.into() }
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Mailer for OutboxMailer {
    fn send(&self, mail: &Mail, date: SystemTime) -> Result<(), MailError> {
        let text = render(mail, date)?;
        create_private_dir(&self.dir)?;
        let ms = crate::clock::unix_ms(date);
        let name = format!(
            "{ms}-{}.eml",
            hex::encode(crate::secret::random_bytes::<6>())
        );
        write_atomically(&self.dir, &name, text.as_bytes())?;
        Ok(())
    }
}

/// The message as RFC 5322 text with CRLF line endings.
pub(crate) fn render(mail: &Mail, date: SystemTime) -> Result<String, MailError> {
    let headers = [&mail.from, &mail.to, &mail.subject];
    if headers.iter().any(|h| h.contains(['\r', '\n'])) {
        return Err(MailError::HeaderInjection);
    }
    let domain = mail
        .from
        .rsplit_once('@')
        .map_or("localhost", |(_, d)| d.trim_end_matches('>'));
    let message_id = format!(
        "<{}@{domain}>",
        hex::encode(crate::secret::random_bytes::<12>())
    );
    let mut out = String::new();
    for (name, value) in [
        ("From", mail.from.as_str()),
        ("To", mail.to.as_str()),
        ("Subject", mail.subject.as_str()),
        ("Date", &rfc5322_date(crate::clock::unix_secs(date))),
        ("Message-ID", &message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ] {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    for line in mail.body.lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    Ok(out)
}

/// `Thu, 01 Jan 1970 00:00:00 +0000` for a unix time (UTC).
pub(crate) fn rfc5322_date(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes `bytes` to `dir/name` so that a reader sees either no file or the whole file:
/// a `0600` temporary file in the same directory, synced, then renamed, then the directory
/// synced.
pub(crate) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(crate::secret::random_bytes::<6>())
    ));
    let result = (|| {
        let mut f = create_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file readable and writable by the owner only (mode set at creation, so the
/// content is never readable by others, not even briefly).
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_767_225_599),
            "Wed, 31 Dec 2025 23:59:59 +0000"
        );
    }

    fn mail(to: &str) -> Mail {
        Mail {
            from: "VettID <no-reply@example.com>".into(),
            to: to.into(),
            subject: "Hello".into(),
            body: "line one\nline two\n".into(),
        }
    }

    #[test]
    fn header_injection_is_refused() {
        assert!(matches!(
            render(&mail("a@example.com\r\nBcc: b@example.com"), UNIX_EPOCH),
            Err(MailError::HeaderInjection)
        ));
    }

    #[test]
    fn outbox_files_are_whole_private_and_named_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(dir.path().join("outbox"));
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        outbox.send(&mail("a@example.com"), at).unwrap();
        let entries: Vec<_> = std::fs::read_dir(outbox.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "no temporary file left behind");
        let name = entries[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            name.starts_with("1700000000123-") && name.ends_with(".eml"),
            "{name}"
        );
        let text = std::fs::read_to_string(&entries[0]).unwrap();
        assert!(text.contains("To: a@example.com\r\n"));
        assert!(text.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
        assert!(text.ends_with("\r\nline one\r\nline two\r\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&entries[0]).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
