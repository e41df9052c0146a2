//! Passwords: the policy (10–256 characters, not a common password) and argon2id hashing with OWASP's
//! parameters (m = 19 MiB, t = 2, p = 1), always on dedicated hashing threads so a sign-in storm never
//! stalls the reactor: one fewer than there are cores, so the other requests keep a core, and memory stays
//! bounded (19 MiB per hashing thread). Unknown users are verified against a dummy
//! hash so they cost the same time.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use portal_core::{Error, Result};
use tokio::sync::oneshot;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 256;

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        include_str!("common-passwords.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    })
}

/// Why `password` is not acceptable, if it is not.
pub fn check_policy(password: &str, email: &str) -> std::result::Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(format!("must be at least {MIN_LEN} characters"));
    }
    if chars > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    let lower = password.to_lowercase();
    if common_passwords().contains(lower.as_str()) {
        return Err("is too common; choose a less predictable password".into());
    }
    let distinct: HashSet<char> = lower.chars().collect();
    if distinct.len() < 4 {
        return Err("uses too few different characters".into());
    }
    if !email.is_empty() && (lower == email || email.split('@').next().is_some_and(|local| lower == local)) {
        return Err("must not be your email address".into());
    }
    Ok(())
}

type HashJob = Box<dyn FnOnce() + Send>;

/// The queue of the hashing threads: a fixed few (one fewer than the cores, at least one) that live as long
/// as the process. Fixed threads keep the other requests a core and bound the memory: each reuses its
/// 19 MiB working area from its own allocator arena, where short-lived pool threads left a retained copy in
/// every arena they touched (resident memory grew to ~380 MB over a few dozen sign-ins).
fn hashing_queue() -> &'static mpsc::Sender<HashJob> {
    static QUEUE: OnceLock<mpsc::Sender<HashJob>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<HashJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).saturating_sub(1).max(1);
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new().name(format!("password-hash-{i}")).spawn(move || loop {
                let next = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).recv();
                let Ok(job) = next else { return };
                // A panicking hash drops its reply (the caller gets an error); the thread carries on.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        sender
    })
}

/// Runs `work` on a hashing thread.
async fn in_hashing_slot<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (reply, answer) = oneshot::channel();
    let job: HashJob = Box::new(move || {
        let _ = reply.send(work());
    });
    hashing_queue().send(job).map_err(|_| Error::internal("the password hashing threads stopped"))?;
    answer.await.map_err(|_| Error::internal("password hashing failed"))
}

/// The argon2id hash (PHC string) of `password`, computed on a hashing thread.
pub async fn hash(password: String) -> Result<String> {
    in_hashing_slot(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    })
    .await?
}

/// A fixed hash of a random password, to spend the same time on unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random: [u8; 16] = rand::random();
        Argon2::default().hash_password(&random).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Whether `password` matches `stored` (or, when there is no stored hash, spends the same time and says
/// no). Runs on a hashing thread.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool> {
    in_hashing_slot(move || {
        let real = stored.is_some();
        let hash = stored.unwrap_or_else(|| dummy_hash().to_string());
        let matches = Argon2::default().verify_password(password.as_bytes(), hash.as_str()).is_ok();
        real && matches
    })
    .await
}

/// Warms the dummy hash at start-up so the first unknown-user sign-in is not faster than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("short", "a@b.c").is_err());
        assert!(check_policy(&"x".repeat(257), "a@b.c").is_err());
        assert!(check_policy("password123", "a@b.c").unwrap_err().contains("common"));
        assert!(check_policy("Qwertyuiop", "a@b.c").unwrap_err().contains("common"));
        assert!(check_policy("aaaaaaaaaaaa", "a@b.c").is_err());
        assert!(check_policy("jane.doe@example.com", "jane.doe@example.com").is_err());
        assert!(check_policy("correct horse battery", "a@b.c").is_ok());
        assert!(common_passwords().len() > 1000);
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
    }
}
