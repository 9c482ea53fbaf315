//! Writing to stdout without panicking when the reader goes away.
//!
//! `println!` panics when stdout is a closed pipe (`grapevine ring | head -1`): Rust
//! ignores SIGPIPE, so the write fails with `BrokenPipe`. Every command prints with
//! [`outln!`] instead, which ends the process quietly with exit code 0 when the
//! reader has gone (as ripgrep does: nobody is left to read a message or a status
//! meant for the output), and with a one-line error and exit code 1 on any other
//! write failure (a full disk, say).

use std::io::ErrorKind;

/// `println!` that never panics: see the [module docs](self).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        if let Err(e) = ::std::writeln!(::std::io::stdout().lock(), $($arg)*) {
            $crate::output::write_failed(e);
        }
    }};
}
pub(crate) use outln;

/// Ends the process after a failed write to stdout: quietly (exit 0) if the reader
/// has gone, else with one error line (exit 1).
pub fn write_failed(error: std::io::Error) -> ! {
    if error.kind() == ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {error}");
    std::process::exit(1);
}
