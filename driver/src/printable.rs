//! Bytes made readable for logs: [`Printable`].

use std::fmt;

/// Bytes shown for a person: as a quoted string when they are UTF-8 (control
/// characters escaped), as hex otherwise, cut after [`Printable::LIMIT`] bytes with
/// the full length noted. Used for keys, values and payloads in the logs.
///
/// ```
/// use grapevine_driver::Printable;
/// assert_eq!(Printable(b"hello").to_string(), r#""hello""#);
/// assert_eq!(Printable(b"a\nb").to_string(), r#""a\nb""#);
/// assert_eq!(Printable(&[0xff, 0x00, 0x10]).to_string(), "0xff0010");
/// let long = Printable(&[b'x'; 100]).to_string();
/// assert!(long.ends_with("…\" (100 bytes)"), "{long}");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Printable<'a>(pub &'a [u8]);

impl Printable<'_> {
    /// The most bytes shown; longer input is cut and its length given.
    pub const LIMIT: usize = 64;
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let cut = bytes.len() > Self::LIMIT;
        let shown = &bytes[..bytes.len().min(Self::LIMIT)];
        // A cut may split a character: show the valid prefix as text.
        let text = match std::str::from_utf8(shown) {
            Ok(text) => Some(text),
            Err(e) if cut && e.error_len().is_none() => {
                std::str::from_utf8(&shown[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        };
        match text {
            Some(text) => write!(
                f,
                "\"{}{}\"",
                text.escape_debug(),
                if cut { "…" } else { "" }
            )?,
            None => {
                f.write_str("0x")?;
                for b in shown {
                    write!(f, "{b:02x}")?;
                }
                if cut {
                    f.write_str("…")?;
                }
            }
        }
        if cut {
            write!(f, " ({} bytes)", bytes.len())?;
        }
        Ok(())
    }
}
