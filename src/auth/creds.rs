//! What a leaf connection signs the hub's nonce with: a credentials file
//! (a user JWT and its NKey seed, in the decorated blocks `nsc` writes) or
//! an NKey seed alone. The signature is base64 URL-safe without padding, as
//! nats-server reads it.

use base64::Engine;

/// A parsed credentials file or seed.
pub struct Creds {
    /// The user JWT (empty for a seed alone).
    pub jwt: String,
    /// The public key of the seed (sent as `nkey` when there is no JWT).
    pub public: String,
    keys: nkeys::KeyPair,
}

impl Creds {
    /// `text` is a credentials file's contents (`file`) or a seed.
    pub fn parse(text: &str, file: bool) -> Result<Creds, String> {
        let (jwt, seed) = if file {
            (
                block_after(text, "JWT").ok_or("credentials file has no user JWT")?,
                block_after(text, "SEED").ok_or("credentials file has no NKey seed")?,
            )
        } else {
            (String::new(), text.trim().to_string())
        };
        let keys =
            nkeys::KeyPair::from_seed(&seed).map_err(|e| format!("invalid NKey seed: {e}"))?;
        if !keys.public_key().starts_with('U') {
            return Err("the NKey seed is not a user seed".into());
        }
        Ok(Creds {
            jwt,
            public: keys.public_key(),
            keys,
        })
    }

    /// Signs the server's nonce.
    pub fn sign(&self, nonce: &[u8]) -> Result<String, String> {
        let sig = self.keys.sign(nonce).map_err(|e| e.to_string())?;
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The first non-empty line after the `-----BEGIN ... <what>-----` line.
fn block_after(text: &str, what: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|l| l.starts_with("---") && l.contains("BEGIN") && l.contains(what))?;
    lines
        .find(|l| !l.is_empty())
        .filter(|l| !l.starts_with("---"))
        .map(str::to_string)
}

// Unit tests only: each unwrap() here is an assertion on a fixed input.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_files_and_seeds_sign_nonces_nats_server_verifies() {
        let kp = nkeys::KeyPair::new_user();
        let seed = kp.seed().unwrap();
        let file = format!(
            "-----BEGIN NATS USER JWT-----\neyJhbGciOi.x.y\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
        );
        let c = Creds::parse(&file, true).unwrap();
        assert_eq!(c.jwt, "eyJhbGciOi.x.y");
        assert_eq!(c.public, kp.public_key());
        let sig = c.sign(b"Lz6PR-IqEU0OKgY").unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sig)
            .unwrap();
        assert!(kp.verify(b"Lz6PR-IqEU0OKgY", &raw).is_ok());
        let alone = Creds::parse(&seed, false).unwrap();
        assert!(alone.jwt.is_empty());
        assert!(Creds::parse("no blocks here", true).is_err());
        assert!(Creds::parse("SXBADSEED", false).is_err());
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        assert!(Creds::parse(&account, false).is_err());
    }
}
