//! Avro single-object encoding over the schemas in `schemas/avro/`.
//!
//! Decoding looks the writer's schema up by fingerprint among the current schema and every
//! released one, and decodes with it: a replay reads the oldest events with the newest code.
//!
//! Why not Avro schema resolution (`from_avro_datum` with a reader schema): apache-avro 0.21
//! resolves a union value to the *first* reader branch it validates against, not the branch of
//! the same name, so a `Lock` record came back as `ChangeProperties` (whose fields all have
//! defaults). Instead the contract only evolves in ways where decoding with the writer's schema
//! and mapping by position and field name is exact, and `tests/contract.rs` enforces it: union
//! branches are only appended, and every added field has a default (and `#[serde(default)]`).

use std::fmt;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use digest::Digest;
use serde::{Serialize, de::DeserializeOwned};

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("not an Avro single-object record: {0}")]
    NotSingleObject(String),
    #[error(
        "unknown writer schema fingerprint {fingerprint} for {message}: written by a newer or foreign producer"
    )]
    UnknownFingerprint {
        message: &'static str,
        fingerprint: String,
    },
    #[error("record does not match schema {message} ({version}): {detail}")]
    Malformed {
        message: &'static str,
        version: &'static str,
        detail: String,
    },
    #[error("cannot encode {message}: {detail}")]
    Encode {
        message: &'static str,
        detail: String,
    },
    #[error("invalid schema {name} ({version}): {detail}")]
    InvalidSchema {
        name: &'static str,
        version: &'static str,
        detail: String,
    },
}

/// One schema version a record may have been written with.
pub struct WriterSchema {
    pub version: &'static str,
    pub schema: Schema,
    fingerprint: [u8; 8],
    /// What apache-avro's own `fingerprint` gives (see [`canonical_form`]); records written
    /// before the fix carry it, so it is still accepted on read.
    legacy_fingerprint: [u8; 8],
}

impl fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WriterSchema({}, {})",
            self.version,
            hex8(&self.fingerprint)
        )
    }
}

/// The current schema of one message type, plus every released version it must still read.
#[derive(Debug)]
pub struct SchemaSet {
    pub name: &'static str,
    current: WriterSchema,
    header: Vec<u8>,
    released: Vec<WriterSchema>,
}

impl SchemaSet {
    /// `released` lists `(version, schema JSON)` of every released `.avsc`, oldest first.
    pub fn new(
        name: &'static str,
        current: &str,
        released: &[(&'static str, &'static str)],
    ) -> Result<Self, ContractError> {
        let current = writer_schema(name, "current", current)?;
        let mut header = MARKER.to_vec();
        header.extend_from_slice(&current.fingerprint);
        let released = released
            .iter()
            .map(|(version, json)| writer_schema(name, version, json))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name,
            current,
            header,
            released,
        })
    }

    pub fn current(&self) -> &Schema {
        &self.current.schema
    }

    pub fn released(&self) -> &[WriterSchema] {
        &self.released
    }

    /// The schema a record with this fingerprint was written with.
    fn writer(&self, fingerprint: &[u8]) -> Option<&WriterSchema> {
        std::iter::once(&self.current)
            .chain(self.released.iter().rev())
            .find(|w| w.fingerprint == fingerprint)
            .or_else(|| {
                std::iter::once(&self.current)
                    .chain(self.released.iter().rev())
                    .find(|w| w.legacy_fingerprint == fingerprint)
            })
    }

    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, ContractError> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&self.header);
        apache_avro::write_avro_datum_ref(&self.current.schema, value, &mut buf).map_err(|e| {
            ContractError::Encode {
                message: self.name,
                detail: e.to_string(),
            }
        })?;
        Ok(buf)
    }

    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, ContractError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MARKER {
            return Err(ContractError::NotSingleObject(format!(
                "expected marker C3 01 and an 8-byte fingerprint, got {} bytes starting {}",
                bytes.len(),
                bytes
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        let fingerprint = &bytes[2..HEADER_LEN];
        let writer = self
            .writer(fingerprint)
            .ok_or_else(|| ContractError::UnknownFingerprint {
                message: self.name,
                fingerprint: hex8(fingerprint),
            })?;
        let malformed = |detail: String| ContractError::Malformed {
            message: self.name,
            version: writer.version,
            detail,
        };
        let mut body = &bytes[HEADER_LEN..];
        let value = apache_avro::from_avro_datum(&writer.schema, &mut body, None)
            .map_err(|e| malformed(e.to_string()))?;
        if !body.is_empty() {
            return Err(malformed(format!(
                "{} trailing bytes after the record",
                body.len()
            )));
        }
        apache_avro::from_value(&value).map_err(|e| malformed(e.to_string()))
    }
}

fn writer_schema(
    name: &'static str,
    version: &'static str,
    json: &str,
) -> Result<WriterSchema, ContractError> {
    let schema = Schema::parse_str(json).map_err(|e| ContractError::InvalidSchema {
        name,
        version,
        detail: e.to_string(),
    })?;
    let invalid = |detail: &str| ContractError::InvalidSchema {
        name,
        version,
        detail: detail.to_owned(),
    };
    let fingerprint = fingerprint(&schema);
    let legacy_fingerprint = <[u8; 8]>::try_from(
        schema
            .fingerprint::<Rabin>()
            .bytes
            .as_slice(),
    )
    .map_err(|_| invalid("fingerprint is not 8 bytes"))?;
    Ok(WriterSchema {
        version,
        schema,
        fingerprint,
        legacy_fingerprint,
    })
}

/// The Parsing Canonical Form of the Avro specification, whose CRC-64-AVRO is the fingerprint
/// in every record. apache-avro 0.21 keeps a primitive that had a logical type as
/// `{"type":"long"}`; the specification, Java's `SchemaNormalization` and fastavro reduce it to
/// `"long"`. Without this fix a consumer in another language could not find the schema of a
/// record by its fingerprint.
pub fn canonical_form(schema: &Schema) -> String {
    let mut form = schema.canonical_form();
    for primitive in [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ] {
        form = form.replace(
            &format!(r#"{{"type":"{primitive}"}}"#),
            &format!(r#""{primitive}""#),
        );
    }
    form
}

/// The fingerprint records written with `schema` carry (CRC-64-AVRO of [`canonical_form`],
/// as its 8 bytes appear after the marker).
pub fn fingerprint(schema: &Schema) -> [u8; 8] {
    let digest = Rabin::digest(canonical_form(schema));
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn hex8(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A message type with a schema in `schemas/avro/`.
pub trait AvroMessage: Serialize + DeserializeOwned {
    /// File stem of the `.avsc`, e.g. `interaction-event`.
    const NAME: &'static str;

    fn schema_set() -> &'static SchemaSet;

    fn encode(&self) -> Result<Vec<u8>, ContractError> {
        Self::schema_set().encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, ContractError> {
        Self::schema_set().decode(bytes)
    }
}

/// Implements [`AvroMessage`] for a type from its current `.avsc` and its released versions.
macro_rules! avro_message {
    ($ty:ty, $name:literal, released: [$($version:literal),* $(,)?]) => {
        impl $crate::codec::AvroMessage for $ty {
            const NAME: &'static str = $name;

            fn schema_set() -> &'static $crate::codec::SchemaSet {
                static SET: std::sync::OnceLock<$crate::codec::SchemaSet> = std::sync::OnceLock::new();
                SET.get_or_init(|| {
                    // The schemas are compiled in and checked by the contract tests, so a
                    // failure here is a build defect, not bad input.
                    #[allow(clippy::expect_used)]
                    $crate::codec::SchemaSet::new(
                        $name,
                        include_str!(concat!("../../avro/", $name, ".avsc")),
                        &[$(($version, include_str!(concat!("../../avro/released/", $version, "/", $name, ".avsc")))),*],
                    )
                    .expect(concat!("schemas/avro/", $name, ".avsc is valid"))
                })
            }
        }
    };
}
pub(crate) use avro_message;
