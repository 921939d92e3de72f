//! PEM and bare base64 DER decoding for keys and certificates: the one decoder, used by
//! [`crate::config`] (checking settings) and [`crate::pay`] (loading keys). A leaf.
//!
//! Keys arrive through environment variables (4 KB limit on SCF), so both a PEM block and a
//! bare base64 DER string are accepted, and a `\n` pasted literally counts as a line break.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A key or certificate text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN <label>-----` block with the expected label.
    #[error("no PEM block labelled {0}")]
    MissingBlock(&'static str),
    /// A PEM block without its END line (or a BEGIN line without its closing dashes).
    #[error("PEM block {0} is not terminated")]
    Unterminated(String),
    /// The body is not valid base64.
    #[error("PEM/base64 body is not valid base64")]
    Base64,
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The label of `-----BEGIN <label>-----`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

const BEGIN: &str = "-----BEGIN ";
const DASHES: &str = "-----";

/// Every PEM block of `text`, in order, whatever its label; text around blocks is ignored.
///
/// # Errors
/// A block without its END line, or a body that is not base64.
pub fn blocks(text: &str) -> Result<Vec<Block>, PemError> {
    let text = text.replace("\\n", "\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let label_end = after
            .find(DASHES)
            .filter(|&i| !after[..i].contains('\n'))
            .ok_or_else(|| {
                PemError::Unterminated(after.lines().next().unwrap_or_default().to_owned())
            })?;
        let label = &after[..label_end];
        let body = &after[label_end + DASHES.len()..];
        let end = format!("-----END {label}-----");
        let stop = body
            .find(&end)
            .ok_or_else(|| PemError::Unterminated(label.to_owned()))?;
        out.push(Block {
            label: label.to_owned(),
            der: decode_base64(&body[..stop])?,
        });
        rest = &body[stop + end.len()..];
    }
    Ok(out)
}

/// All DER blobs of the blocks labelled `label` in `text`, in order (a bundle may hold several).
///
/// # Errors
/// See [`blocks`].
pub fn decode_all(text: &str, label: &'static str) -> Result<Vec<Vec<u8>>, PemError> {
    Ok(blocks(text)?
        .into_iter()
        .filter(|b| b.label == label)
        .map(|b| b.der)
        .collect())
}

/// The single DER blob of `text`: the first PEM block labelled `label`, or, when `text` has no
/// PEM armour at all, `text` itself read as base64 DER.
///
/// # Errors
/// No block labelled `label`, or see [`blocks`].
pub fn decode_one(text: &str, label: &'static str) -> Result<Vec<u8>, PemError> {
    if is_pem(text) {
        decode_all(text, label)?
            .into_iter()
            .next()
            .ok_or(PemError::MissingBlock(label))
    } else {
        decode_base64(text)
    }
}

/// True when `text` holds PEM armour (else it is read as bare base64).
pub fn is_pem(text: &str) -> bool {
    text.contains("-----BEGIN")
}

/// Standard base64 with whitespace (line breaks of PEM bodies, `\n` escapes pasted into env
/// vars) ignored.
///
/// # Errors
/// Empty, or not base64.
pub fn decode_base64(body: &str) -> Result<Vec<u8>, PemError> {
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
            Err(PemError::Unterminated("X".into()))
        );
        assert_eq!(decode_one("not base64!", "X"), Err(PemError::Base64));
        assert_eq!(decode_one("   ", "X"), Err(PemError::Base64));
    }

    #[test]
    fn lists_every_label_and_accepts_escaped_newlines() {
        let text =
            r"-----BEGIN A-----\nAAEC\n-----END A-----\n-----BEGIN B-----\nBA==\n-----END B-----";
        let found = blocks(text).unwrap();
        assert_eq!(
            found,
            vec![
                Block {
                    label: "A".into(),
                    der: vec![0, 1, 2]
                },
                Block {
                    label: "B".into(),
                    der: vec![4]
                }
            ]
        );
        assert_eq!(
            blocks("-----BEGIN A\nAA==\n-----END A-----"),
            Err(PemError::Unterminated("A".into()))
        );
    }
}
