//! Verification keys, each pinned to the one algorithm it may verify: the
//! HS256 development secret, a PEM public key, the keys of a JWKS (file or
//! URL). A token names its algorithm (and usually its key, `kid`); it is
//! checked only against keys of that algorithm, so an RSA public key can
//! never be used as an HMAC secret (the classic confusion attack), and
//! `none` matches no key at all.

use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// A key and the algorithm it is pinned to.
#[derive(Clone)]
pub struct Key {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// The HS256 secret (development, and deployments that sign their own tokens).
    pub fn secret(secret: &[u8]) -> Self {
        Self {
            kid: None,
            algorithm: Algorithm::HS256,
            decoding: DecodingKey::from_secret(secret),
        }
    }

    /// A PEM public key: RSA verifies RS256, EC (P-256) ES256, Ed25519 EdDSA.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (algorithm, decoding) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, key)
        } else {
            return Err("not a PEM RSA, EC or Ed25519 public key".into());
        };
        Ok(Self {
            kid: None,
            algorithm,
            decoding,
        })
    }

    /// A key of a JWKS. Its algorithm is its `alg`, else the one its type
    /// implies (RSA: RS256, EC P-256: ES256, P-384: ES384, Ed25519: EdDSA).
    /// Encryption keys and symmetric keys are refused: a published key set
    /// holds public signing keys only.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, String> {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            return Err("an encryption key (use: enc)".into());
        }
        let algorithm = match jwk.common.key_algorithm {
            Some(alg) => Algorithm::from_str(&alg.to_string())
                .map_err(|_| format!("algorithm {alg} cannot sign tokens"))?,
            None => match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => return Err("an EC key on an unsupported curve".into()),
                },
                AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                    Algorithm::EdDSA
                }
                _ => return Err("a key of an unsupported type".into()),
            },
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|err| err.to_string())?;
        if decoding.family() != algorithm.family() {
            return Err(format!("{algorithm:?} does not match the key's type"));
        }
        if matches!(
            algorithm,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err("a symmetric key (only auth.jwt_secret may hold one)".into());
        }
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            algorithm,
            decoding,
        })
    }
}

/// What a token's header selects from the keys.
#[derive(Debug)]
pub enum Lookup {
    /// The keys to try, in order (copies: a few hundred bytes each, and
    /// owning them lets a JWKS be replaced while a token is checked).
    Found(Vec<Key>),
    /// The token names a `kid` no key has.
    UnknownKid,
    /// The keys with the token's `kid` are pinned to another algorithm.
    AlgorithmMismatch,
    /// No key verifies the token's algorithm.
    NoKeyForAlgorithm,
}

/// A set of keys, as loaded from one source.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn push(&mut self, key: Key) {
        self.keys.push(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> + Clone {
        self.keys.iter()
    }

    /// The usable keys of a JWKS document; keys Herald cannot use (other
    /// types, encryption keys) are skipped and named in `skipped`.
    pub fn from_jwks_json(json: &[u8]) -> Result<(Self, Vec<String>), String> {
        // Keys one at a time: one key of an algorithm this library does not
        // know must not make the whole set unreadable.
        #[derive(Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|err| format!("not a JWKS document: {err}"))?;
        let mut set = Self::default();
        let mut skipped = Vec::new();
        for (i, value) in raw.keys.into_iter().enumerate() {
            let key = serde_json::from_value::<Jwk>(value)
                .map_err(|err| err.to_string())
                .and_then(|jwk| Key::from_jwk(&jwk));
            match key {
                Ok(key) => set.push(key),
                Err(why) => skipped.push(format!("key {i}: {why}")),
            }
        }
        Ok((set, skipped))
    }
}

/// Selects the keys a token with `kid` and `alg` may be checked against.
///
/// A `kid` picks the keys that carry it, and they must be pinned to `alg`.
/// A `kid` no key carries falls back to keys without a `kid` (a PEM key, the
/// secret) of that algorithm: providers stamp a `kid` on every token even
/// when the operator configured their single key as a PEM file.
pub fn lookup<'a>(
    keys: impl Iterator<Item = &'a Key> + Clone,
    kid: Option<&str>,
    alg: Algorithm,
) -> Lookup {
    if let Some(kid) = kid {
        let named: Vec<&Key> = keys
            .clone()
            .filter(|key| key.kid.as_deref() == Some(kid))
            .collect();
        if !named.is_empty() {
            let pinned: Vec<Key> = named
                .into_iter()
                .filter(|k| k.algorithm == alg)
                .cloned()
                .collect();
            return if pinned.is_empty() {
                Lookup::AlgorithmMismatch
            } else {
                Lookup::Found(pinned)
            };
        }
        let unnamed: Vec<Key> = keys
            .filter(|key| key.kid.is_none() && key.algorithm == alg)
            .cloned()
            .collect();
        return if unnamed.is_empty() {
            Lookup::UnknownKid
        } else {
            Lookup::Found(unnamed)
        };
    }
    let pinned: Vec<Key> = keys.filter(|key| key.algorithm == alg).cloned().collect();
    if pinned.is_empty() {
        Lookup::NoKeyForAlgorithm
    } else {
        Lookup::Found(pinned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_jwk(kid: &str, alg: Option<&str>) -> serde_json::Value {
        // A 2048-bit modulus is not needed to test selection: any valid
        // base64url numbers make a key the library accepts.
        let mut jwk = serde_json::json!({"kty": "RSA", "kid": kid, "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"});
        if let Some(alg) = alg {
            jwk["alg"] = alg.into();
        }
        jwk
    }

    #[test]
    fn jwks_keys_are_pinned_to_their_algorithm() {
        let doc = serde_json::json!({"keys": [
            rsa_jwk("a", Some("RS256")),
            rsa_jwk("b", None),
            rsa_jwk("c", Some("PS256")),
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "RSA", "kid": "e", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "x", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "weird"}
        ]});
        let (set, skipped) = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
        let pinned: Vec<(Option<&str>, Algorithm)> = set
            .iter()
            .map(|k| (k.kid.as_deref(), k.algorithm))
            .collect();
        assert_eq!(
            pinned,
            [
                (Some("a"), Algorithm::RS256),
                (Some("b"), Algorithm::RS256),
                (Some("c"), Algorithm::PS256)
            ]
        );
        assert_eq!(skipped.len(), 4, "{skipped:?}");
    }

    #[test]
    fn lookup_follows_kid_then_algorithm() {
        let doc = serde_json::json!({"keys": [rsa_jwk("a", Some("RS256"))]});
        let (mut set, _) = KeySet::from_jwks_json(doc.to_string().as_bytes()).unwrap();
        assert!(matches!(
            lookup(set.iter(), Some("a"), Algorithm::RS256),
            Lookup::Found(keys) if keys.len() == 1
        ));
        assert!(matches!(
            lookup(set.iter(), Some("a"), Algorithm::HS256),
            Lookup::AlgorithmMismatch
        ));
        assert!(matches!(
            lookup(set.iter(), Some("zz"), Algorithm::RS256),
            Lookup::UnknownKid
        ));
        assert!(matches!(
            lookup(set.iter(), None, Algorithm::ES256),
            Lookup::NoKeyForAlgorithm
        ));
        // The secret has no kid: an HS256 token naming any kid falls back to it,
        // an RS256 token never does.
        set.push(Key::secret(b"0123456789abcdef0123456789abcdef"));
        assert!(matches!(
            lookup(set.iter(), Some("zz"), Algorithm::HS256),
            Lookup::Found(keys) if keys[0].algorithm == Algorithm::HS256
        ));
        assert!(matches!(
            lookup(set.iter(), Some("zz"), Algorithm::RS256),
            Lookup::UnknownKid
        ));
    }

    #[test]
    fn pem_files_that_hold_no_public_key_are_refused() {
        assert!(Key::from_pem(b"not a key").is_err());
    }
}
