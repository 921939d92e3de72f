//! Minimal PEM / base64-DER decoding for keys and certificates.
//!
//! Keys arrive through environment variables (4 KB limit on SCF), so both a PEM block and a
//! bare base64 DER string are accepted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A key or certificate text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN <label>-----` block with the expected label.
    #[error("no PEM block labelled {0}")]
    MissingBlock(&'static str),
    /// A PEM block without its END line.
    #[error("PEM block {0} is not terminated")]
    Unterminated(&'static str),
    /// The body is not valid base64.
    #[error("PEM/base64 body is not valid base64")]
    Base64,
}

/// All DER blobs of the blocks labelled `label` in `text`, in order (a bundle may hold several).
pub(crate) fn decode_all(text: &str, label: &'static str) -> Result<Vec<Vec<u8>>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let stop = after.find(&end).ok_or(PemError::Unterminated(label))?;
        out.push(decode_base64_lenient(&after[..stop])?);
        rest = &after[stop + end.len()..];
    }
    Ok(out)
}

/// The single DER blob of `text`: the first PEM block labelled `label`, or, when `text` has no
/// PEM armour at all, `text` itself read as base64 DER.
pub(crate) fn decode_one(text: &str, label: &'static str) -> Result<Vec<u8>, PemError> {
    if text.contains("-----BEGIN") {
        decode_all(text, label)?
            .into_iter()
            .next()
            .ok_or(PemError::MissingBlock(label))
    } else {
        decode_base64_lenient(text)
    }
}

/// Standard base64 with whitespace (line breaks of PEM bodies, `\n` escapes pasted into env vars) ignored.
fn decode_base64_lenient(body: &str) -> Result<Vec<u8>, PemError> {
    let compact: String = body
        .replace("\\n", "")
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(PemError::Base64);
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| PemError::Base64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pem_bundle_and_bare_base64() {
        let pem = "junk\n-----BEGIN X-----\nAAEC\nAw==\n-----END X-----\n-----BEGIN X-----\nBA==\n-----END X-----\n";
        assert_eq!(
            decode_all(pem, "X").unwrap(),
            vec![vec![0, 1, 2, 3], vec![4]]
        );
        assert_eq!(decode_one(pem, "X").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(decode_one("AAECAw==", "X").unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode_one("-----BEGIN Y-----\nAA==\n-----END Y-----", "X"),
            Err(PemError::MissingBlock("X"))
        );
        assert_eq!(
            decode_one("-----BEGIN X-----\nAA==", "X"),
            Err(PemError::Unterminated("X"))
        );
        assert_eq!(decode_one("not base64!", "X"), Err(PemError::Base64));
        assert_eq!(decode_one("   ", "X"), Err(PemError::Base64));
    }
}
