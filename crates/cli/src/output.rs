//! Standard output for results (logs and errors go to stderr). A closed pipe (`| head`) ends
//! output quietly instead of panicking.

use std::io::Write;

use crate::error::CliError;

pub fn line(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Write(e)),
    }
}
