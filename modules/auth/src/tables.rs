//! The auth module's tables. Only this crate opens them; other modules call its service functions.

use portal_core::WriteTx;
use portal_core::{Index, Table};

use crate::model::{
    Challenge, FactorFailures, PendingRegistration, RefreshEntry, ResetToken, Session, SignInCode, User,
};

pub(crate) const USERS: Table<User> = Table::new("auth.users");
/// email → user id
pub(crate) const USERS_BY_EMAIL: Index = Index::new("auth.users_by_email");
/// phone → user id
pub(crate) const USERS_BY_PHONE: Index = Index::new("auth.users_by_phone");
/// customer id ‖ user id
pub(crate) const USERS_BY_CUSTOMER: Index = Index::new("auth.users_by_customer");
/// user id of every admin
pub(crate) const ADMINS: Index = Index::new("auth.admins");
pub(crate) const SESSIONS: Table<Session> = Table::new("auth.sessions");
/// user id ‖ session id
pub(crate) const SESSIONS_BY_USER: Index = Index::new("auth.sessions_by_user");
/// SHA-256 of the session cookie → session id
pub(crate) const SESSIONS_BY_COOKIE: Index = Index::new("auth.sessions_by_cookie");
/// SHA-256 of a refresh token → its session
pub(crate) const REFRESH_TOKENS: Table<RefreshEntry> = Table::new("auth.refresh_tokens");
/// SHA-256 of a challenge token → the pending 2FA sign-in
pub(crate) const CHALLENGES: Table<Challenge> = Table::new("auth.challenges");
/// SHA-256 of a reset token → its user
pub(crate) const RESET_TOKENS: Table<ResetToken> = Table::new("auth.reset_tokens");
/// SHA-256 of a registration's confirmation token → the registration
pub(crate) const PENDING_REGISTRATIONS: Table<PendingRegistration> = Table::new("auth.pending_registrations");
/// user id → the pending one-time sign-in code
pub(crate) const SIGN_IN_CODES: Table<SignInCode> = Table::new("auth.sign_in_codes");
/// user id ‖ factor tag → the factor's wrong codes and lock
pub(crate) const FACTOR_FAILURES: Table<FactorFailures> = Table::new("auth.factor_failures");
/// key name → key bytes (the generated JWT and code keys). A `.secrets` table: never in a backup.
pub(crate) const KEYS: Index = Index::new("auth.secrets");
/// Where schema 1 kept the keys.
pub(crate) const FORMER_KEYS: &str = "auth.keys";

pub(crate) fn create_all(tx: &WriteTx) -> portal_core::Result<()> {
    USERS.create(tx)?;
    for index in
        [&USERS_BY_EMAIL, &USERS_BY_PHONE, &USERS_BY_CUSTOMER, &ADMINS, &SESSIONS_BY_USER, &SESSIONS_BY_COOKIE, &KEYS]
    {
        index.create(tx)?;
    }
    SESSIONS.create(tx)?;
    REFRESH_TOKENS.create(tx)?;
    CHALLENGES.create(tx)?;
    RESET_TOKENS.create(tx)?;
    PENDING_REGISTRATIONS.create(tx)?;
    SIGN_IN_CODES.create(tx)?;
    FACTOR_FAILURES.create(tx)?;
    Ok(())
}
