//! A failure budget per user and factor, across challenges and codes: each challenge or code allows a few
//! tries of its own, but opening a new one must not buy a guesser new tries. 10 wrong codes of a factor
//! within 15 minutes lock it for 15 minutes (every code refused, the right one too), and the user is told
//! by mail; asking for a new code changes nothing.

use portal_core::ids::UserId;
use portal_core::WriteTx;
use portal_core::{ReadTx, Result, Timestamp};

use crate::model::FactorFailures;
use crate::tables::FACTOR_FAILURES;

/// Wrong codes of one factor allowed within [`WINDOW_SECS`].
pub const BUDGET: u32 = 10;
/// The counting window, and how long the factor stays locked once the budget is spent.
pub const WINDOW_SECS: i64 = 15 * 60;

/// A second factor, or the one-time sign-in code standing in for the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factor {
    Totp,
    SignInCode,
}

impl Factor {
    fn tag(self) -> u8 {
        match self {
            Self::Totp => 1,
            Self::SignInCode => 2,
        }
    }

    /// How the factor is named to its user.
    pub fn name(self) -> &'static str {
        match self {
            Self::Totp => "two-factor codes",
            Self::SignInCode => "one-time sign-in codes",
        }
    }
}

fn key(user: UserId, factor: Factor) -> Vec<u8> {
    let mut key = user.to_key().to_vec();
    key.push(factor.tag());
    key
}

/// Until when the factor is locked, if it is at `now`.
pub fn locked_until(tx: &impl ReadTx, user: UserId, factor: Factor, now: Timestamp) -> Result<Option<Timestamp>> {
    let state = FACTOR_FAILURES.get(tx, &key(user, factor))?;
    Ok(state.and_then(|s| s.locked_until).filter(|until| now < *until))
}

fn window_over(state: &FactorFailures, now: Timestamp) -> bool {
    state.since.is_none_or(|since| now.micros() - since.micros() >= WINDOW_SECS * 1_000_000)
}

/// Counts a wrong code; returns the end of the lock when this one spent the budget (the moment to tell the
/// user).
pub fn failed(tx: &WriteTx, user: UserId, factor: Factor, now: Timestamp) -> Result<Option<Timestamp>> {
    let key = key(user, factor);
    let mut state = FACTOR_FAILURES.get(tx, &key)?.unwrap_or_default();
    if window_over(&state, now) || state.locked_until.is_some_and(|until| until <= now) {
        state = FactorFailures { since: Some(now), failures: 0, locked_until: None };
    }
    state.failures += 1;
    let locks = state.failures >= BUDGET && state.locked_until.is_none();
    if locks {
        state.locked_until = Some(now.plus_secs(WINDOW_SECS));
    }
    FACTOR_FAILURES.insert(tx, &key, &state)?;
    Ok(if locks { state.locked_until } else { None })
}

/// A right code: the count starts over.
pub fn passed(tx: &WriteTx, user: UserId, factor: Factor) -> Result<()> {
    FACTOR_FAILURES.remove(tx, &key(user, factor))?;
    Ok(())
}

/// Forgets counts whose window and lock are over (they would start over at the next failure anyway).
pub fn sweep(tx: &WriteTx, now: Timestamp) -> Result<usize> {
    let mut stale = Vec::new();
    FACTOR_FAILURES.scan_prefix(tx, &[], |key, state| {
        if window_over(&state, now) && state.locked_until.is_none_or(|until| until <= now) {
            stale.push(key.to_vec());
        }
        Ok::<_, portal_core::Error>(true)
    })?;
    for key in &stale {
        FACTOR_FAILURES.remove(tx, key)?;
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_micros(1_800_000_000_000_000 + secs * 1_000_000)
    }

    #[test]
    fn ten_failures_within_the_window_lock_the_factor_for_the_window() {
        let store = portal_core::Store::in_memory().unwrap();
        let user = UserId::generate();
        store
            .write_blocking(move |tx| {
                crate::tables::create_all(tx)?;
                for i in 0..BUDGET - 1 {
                    assert_eq!(failed(tx, user, Factor::Totp, at(i as i64 * 60))?, None);
                }
                assert_eq!(locked_until(tx, user, Factor::Totp, at(600))?, None);
                let lock = failed(tx, user, Factor::Totp, at(600))?;
                assert_eq!(lock, Some(at(600 + WINDOW_SECS)));
                assert_eq!(locked_until(tx, user, Factor::Totp, at(601))?, lock);
                // Other factors and users are not touched.
                assert_eq!(locked_until(tx, user, Factor::SignInCode, at(601))?, None);
                assert_eq!(locked_until(tx, UserId::generate(), Factor::Totp, at(601))?, None);
                // More failures while locked do not extend or repeat the lock.
                assert_eq!(failed(tx, user, Factor::Totp, at(700))?, None);
                assert_eq!(locked_until(tx, user, Factor::Totp, at(600 + WINDOW_SECS))?, None);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn the_sweep_forgets_counts_whose_window_and_lock_are_over() {
        let store = portal_core::Store::in_memory().unwrap();
        let (counting, locked) = (UserId::generate(), UserId::generate());
        store
            .write_blocking(move |tx| {
                crate::tables::create_all(tx)?;
                failed(tx, counting, Factor::SignInCode, at(0))?;
                for _ in 0..BUDGET {
                    failed(tx, locked, Factor::Totp, at(100))?;
                }
                // Both windows still run.
                assert_eq!(sweep(tx, at(WINDOW_SECS - 1))?, 0);
                // The first window is over; the lock still holds.
                assert_eq!(sweep(tx, at(WINDOW_SECS))?, 1);
                assert_eq!(locked_until(tx, locked, Factor::Totp, at(WINDOW_SECS))?, Some(at(100 + WINDOW_SECS)));
                assert_eq!(sweep(tx, at(100 + WINDOW_SECS))?, 1);
                assert_eq!(FACTOR_FAILURES.get(tx, &key(locked, Factor::Totp))?.map(|s| s.failures), None);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn failures_spread_beyond_the_window_never_lock() {
        let store = portal_core::Store::in_memory().unwrap();
        let user = UserId::generate();
        store
            .write_blocking(move |tx| {
                crate::tables::create_all(tx)?;
                // 30 failures, one every 100 s: never 10 within 15 minutes of the window's start.
                for i in 0..30 {
                    assert_eq!(failed(tx, user, Factor::SignInCode, at(i * 100))?, None, "failure {i}");
                }
                // A right code starts the count over.
                passed(tx, user, Factor::SignInCode)?;
                for i in 0..BUDGET - 1 {
                    assert_eq!(failed(tx, user, Factor::SignInCode, at(3000 + i as i64))?, None);
                }
                Ok(())
            })
            .unwrap();
    }
}
