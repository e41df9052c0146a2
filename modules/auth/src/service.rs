//! The sign-in flows of the contract: register, login (with the 2FA challenge), refresh, logout, TOTP
//! enrolment, password reset, one-time codes. No HTTP types here; `api.rs` maps these to endpoints.

use std::sync::Arc;

use portal_core::config::Config;
use portal_notify::NotifyConfig;

use crate::config::{AuthConfig, Registration};
use portal_core::ids::{SessionId, UserId};
use portal_core::rate_limit::RateLimiter;
use portal_core::{Context, Error, Principal, Result, Role, Store, Timestamp};
use portal_notify::Notifier;
use subtle::ConstantTimeEq;

use crate::lockout::{self, Factor};
use crate::model::{Challenge, Holder, ResetToken, Session, Settings, SignInCode, User};
use crate::session_cache::SessionCache;
use crate::sessions::{self, Policy, Refresh};
use crate::tables::{CHALLENGES, KEYS, RESET_TOKENS, SIGN_IN_CODES, USERS};
use crate::tokens::{random_token, sha256, Keys};
use crate::{password, totp, users};

mod members;
mod registration;
pub use members::NewMember;
pub use registration::CONFIRM_TTL_SECS;

/// Lifetime of a 2FA challenge.
const CHALLENGE_TTL_SECS: i64 = 5 * 60;
/// Lifetime of a password-reset token.
pub const RESET_TTL_SECS: i64 = 30 * 60;
/// Lifetime of a one-time sign-in code.
const CODE_TTL_SECS: i64 = 10 * 60;
/// Wrong codes allowed per challenge or one-time code.
const MAX_ATTEMPTS: u32 = 5;

/// What the client gets when a sign-in completes.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    /// Set on a new session: the `portal_session` and `portal_csrf` cookie values.
    pub cookies: Option<(String, String)>,
    pub user: User,
}

#[allow(clippy::large_enum_variant)] // built once per sign-in and consumed at once
pub enum SignIn {
    Done(Issued),
    /// The password (or code) was right; the second factor is still due.
    TwoFactor {
        challenge_token: String,
        expires_in: i64,
    },
}

/// Where a one-time code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

pub struct AuthService {
    store: Store,
    keys: Keys,
    policy: Policy,
    notifier: Notifier,
    registration: Registration,
    public_url: Option<String>,
    secure_cookies: bool,
    session_cache: SessionCache,
    /// Holds each target account of the credential routes to its limit, from any number of IPs.
    limiter: Arc<RateLimiter>,
}

/// The shared auth service of this app (built on first use).
pub fn service(ctx: &Context) -> Result<Arc<AuthService>> {
    ctx.services.get_or_try_init(|| AuthService::new(ctx))
}

fn unix_secs(now: Timestamp) -> u64 {
    u64::try_from(now.unix_secs()).unwrap_or(0)
}

fn bad_credentials() -> Error {
    Error::unauthorized("invalid email or password")
}

impl AuthService {
    fn new(ctx: &Context) -> Result<Self> {
        let config: &Config = &ctx.config;
        let auth = ctx.settings::<AuthConfig>()?;
        let (stored_jwt, code_key) =
            ctx.store.read_blocking(|tx| Ok((KEYS.get(tx, b"jwt")?, KEYS.get(tx, b"codes")?)))?;
        let jwt = match &auth.jwt_secret {
            Some(secret) if secret.expose().len() >= 32 => secret.expose().as_bytes().to_vec(),
            Some(_) => return Err(Error::internal("PORTAL_JWT_SECRET must be at least 32 bytes long")),
            None => stored_jwt.ok_or_else(|| Error::internal("the JWT key is missing from the store"))?,
        };
        let code_key = code_key.ok_or_else(|| Error::internal("the code key is missing from the store"))?;
        password::warm_up();
        Ok(Self {
            store: ctx.store.clone(),
            keys: Keys::new(&jwt, code_key),
            policy: Policy {
                idle_secs: i64::from(auth.session_idle_minutes) * 60,
                absolute_secs: i64::from(auth.session_absolute_hours) * 3600,
            },
            notifier: Notifier::new(&*ctx.settings::<NotifyConfig>()?, ctx.store.clone())?,
            registration: auth.registration,
            public_url: config.public_url.clone(),
            secure_cookies: config.served_over_tls(),
            session_cache: SessionCache::new(ctx.store.is_postgres().then_some(crate::session_cache::SHARED_MAX_AGE)),
            limiter: portal_core::rate_limit::shared(ctx),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The stored session `id`, from memory when no session was written since it was read (on
    /// PostgreSQL, where other portals end sessions too, also at most `SHARED_MAX_AGE` ago).
    pub async fn session(&self, id: SessionId) -> Result<Option<Session>> {
        let version = crate::session_cache::CHANGES.current();
        if let Some(known) = self.session_cache.get(id, version) {
            return Ok(known);
        }
        let read_at = std::time::Instant::now();
        let found = self.store.read_blocking(|tx| sessions::get(tx, id))?;
        self.session_cache.keep(id, version, read_at, found.clone());
        Ok(found)
    }

    pub fn secure_cookies(&self) -> bool {
        self.secure_cookies
    }

    /// Absolute session lifetime, for cookie max-age.
    pub fn session_secs(&self) -> i64 {
        self.policy.absolute_secs
    }

    /// A link into the portal for mails (`PORTAL_PUBLIC_URL` or a relative path).
    pub fn link(&self, path_and_query: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{}{}", base.trim_end_matches('/'), path_and_query),
            None => path_and_query.to_string(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<SignIn> {
        let email = users::normalize_email(email);
        self.limiter.check_account(&email)?;
        let user = self.store.read_blocking(|tx| users::by_email(tx, &email))?;
        let stored_hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = password::verify(password.to_string(), stored_hash).await?;
        match user {
            Some(user) if ok => self.first_factor_passed(user).await,
            _ => Err(bad_credentials()),
        }
    }

    /// The first factor is done: a session, or the 2FA challenge when the user has 2FA on.
    async fn first_factor_passed(&self, user: User) -> Result<SignIn> {
        // Disabled (its customer archived): the answer of a wrong password, so that only an admin learns it.
        if user.disabled {
            return Err(bad_credentials());
        }
        if !user.two_factor.enabled() {
            return self.open_session(user).await.map(SignIn::Done);
        }
        let token = random_token();
        let challenge =
            Challenge { user_id: user.id, expires_at: Timestamp::now().plus_secs(CHALLENGE_TTL_SECS), failures: 0 };
        let key = sha256(&token);
        self.store.write(move |tx| Ok(CHALLENGES.insert(tx, &key, &challenge)?)).await?;
        Ok(SignIn::TwoFactor { challenge_token: token, expires_in: CHALLENGE_TTL_SECS })
    }

    async fn open_session(&self, user: User) -> Result<Issued> {
        let policy = self.policy;
        let user_id = user.id;
        let holder = Holder { role: user.role, customer_id: user.customer_id };
        let opened = self.store.write(move |tx| sessions::open(tx, user_id, holder, &policy, Timestamp::now())).await?;
        let (access_token, expires_in) = self.keys.issue(user.id, opened.session.id, user.role, user.customer_id)?;
        Ok(Issued {
            access_token,
            expires_in,
            refresh_token: opened.refresh,
            cookies: Some((opened.cookie, opened.csrf)),
            user,
        })
    }

    /// Completes a sign-in waiting for its second factor.
    pub async fn verify_challenge(&self, challenge_token: &str, code: &str) -> Result<Issued> {
        #[allow(clippy::large_enum_variant)] // one per call, consumed at once
        enum Outcome {
            Passed(User),
            Wrong,
            Locked,
            /// The user's TOTP factor is locked until then; `true` when this attempt locked it.
            FactorLocked(User, Timestamp, bool),
            Invalid,
        }
        let key = sha256(challenge_token);
        let code = code.to_string();
        let outcome = self
            .store
            .write(move |tx| {
                let now = Timestamp::now();
                let Some(mut challenge) = CHALLENGES.get(tx, &key)? else { return Ok(Outcome::Invalid) };
                let user = users::get(tx, challenge.user_id)?;
                let Some(mut user) = user.filter(|_| now < challenge.expires_at) else {
                    CHALLENGES.remove(tx, &key)?;
                    return Ok(Outcome::Invalid);
                };
                if let Some(until) = lockout::locked_until(tx, user.id, Factor::Totp, now)? {
                    CHALLENGES.remove(tx, &key)?;
                    return Ok(Outcome::FactorLocked(user, until, false));
                }
                if totp::accept(&mut user.two_factor, &code, unix_secs(now))? {
                    CHALLENGES.remove(tx, &key)?;
                    USERS.insert(tx, &user.id.to_key(), &user)?;
                    lockout::passed(tx, user.id, Factor::Totp)?;
                    return Ok(Outcome::Passed(user));
                }
                if let Some(until) = lockout::failed(tx, user.id, Factor::Totp, now)? {
                    CHALLENGES.remove(tx, &key)?;
                    return Ok(Outcome::FactorLocked(user, until, true));
                }
                challenge.failures += 1;
                if challenge.failures >= MAX_ATTEMPTS {
                    CHALLENGES.remove(tx, &key)?;
                    return Ok(Outcome::Locked);
                }
                CHALLENGES.insert(tx, &key, &challenge)?;
                Ok(Outcome::Wrong)
            })
            .await?;
        match outcome {
            Outcome::Passed(user) => self.open_session(user).await,
            Outcome::Wrong => Err(Error::unauthorized("invalid or already used code")),
            Outcome::Locked => Err(Error::unauthorized("too many wrong codes; sign in again")),
            Outcome::FactorLocked(user, until, just_now) => {
                if just_now {
                    self.tell_factor_locked(user, Factor::Totp, until);
                }
                // The challenge proves the password, so saying why reveals nothing to a stranger.
                Err(Error::unauthorized(format!(
                    "two-factor sign-in is locked after too many wrong codes until {}",
                    until.datetime().format("%Y-%m-%d %H:%M UTC")
                )))
            }
            Outcome::Invalid => Err(Error::unauthorized("invalid or expired challenge; sign in again")),
        }
    }

    /// Starts TOTP enrolment: a new secret, waiting for its first code.
    pub async fn begin_enrolment(&self, caller: &Principal, current_password: &str) -> Result<totp::Enrolment> {
        let id = caller.user_id;
        let stored_hash = self.user(id).await?.password_hash;
        if !password::verify(current_password.to_string(), stored_hash).await? {
            return Err(Error::invalid("current_password", "is incorrect"));
        }
        let secret = totp::new_secret();
        let pending = secret.clone();
        let email = self
            .store
            .write(move |tx| {
                let mut user = users::get(tx, id)?.ok_or_else(|| Error::not_found("user"))?;
                if user.two_factor.enabled() {
                    return Err(Error::conflict("two-factor authentication is already enabled"));
                }
                user.two_factor.pending_secret = Some(pending.clone());
                user.updated_at = Timestamp::now();
                USERS.insert(tx, &id.to_key(), &user)?;
                Ok(user.email)
            })
            .await?;
        totp::enrolment(&secret, &email)
    }

    /// Confirms enrolment with the first code; returns the recovery codes (shown once).
    pub async fn confirm_enrolment(&self, caller: &Principal, code: &str) -> Result<Vec<String>> {
        let id = caller.user_id;
        let code = code.to_string();
        let (codes, hashes) = totp::recovery_codes();
        let confirmed = self
            .store
            .write(move |tx| {
                let mut user = users::get(tx, id)?.ok_or_else(|| Error::not_found("user"))?;
                if user.two_factor.enabled() {
                    return Err(Error::conflict("two-factor authentication is already enabled"));
                }
                let Some(secret) = user.two_factor.pending_secret.clone() else {
                    return Err(Error::conflict("no enrolment in progress; call /auth/enable-2fa first"));
                };
                let now = Timestamp::now();
                let Some(step) = totp::matching_step(&secret, &code, unix_secs(now))? else { return Ok(false) };
                let tf = &mut user.two_factor;
                tf.secret = Some(secret);
                tf.pending_secret = None;
                tf.confirmed_at = Some(now);
                tf.last_step = step;
                tf.recovery_hashes = hashes.clone();
                user.updated_at = now;
                USERS.insert(tx, &id.to_key(), &user)?;
                Ok(true)
            })
            .await?;
        if confirmed {
            Ok(codes)
        } else {
            Err(Error::unauthorized("invalid code"))
        }
    }

    pub async fn user(&self, id: UserId) -> Result<User> {
        self.store.read_blocking(|tx| users::get(tx, id))?.ok_or_else(|| Error::not_found("user"))
    }

    /// Trades a current refresh token for new tokens (rotation with reuse detection).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued> {
        let token = refresh_token.to_string();
        let policy = self.policy;
        let (refresh, user) = self
            .store
            .write(move |tx| {
                let refresh = sessions::rotate(tx, &token, &policy, Timestamp::now())?;
                let user = match &refresh {
                    Refresh::Rotated(session, _) => users::get(tx, session.user_id)?,
                    _ => None,
                };
                Ok((refresh, user))
            })
            .await?;
        match (refresh, user) {
            (Refresh::Rotated(session, next), Some(user)) if !user.disabled => {
                let (access_token, expires_in) = self.keys.issue(user.id, session.id, user.role, user.customer_id)?;
                Ok(Issued { access_token, expires_in, refresh_token: next, cookies: None, user })
            }
            (Refresh::Reused, _) => {
                tracing::warn!("a rotated-out refresh token was presented again; its session was ended");
                Err(Error::unauthorized("refresh token already used; the session has been ended"))
            }
            _ => Err(Error::unauthorized("invalid or expired refresh token")),
        }
    }

    /// New tokens for a caller signed in with the session cookie.
    pub async fn refresh_session(&self, caller: &Principal) -> Result<Issued> {
        let (sid, uid) = (caller.session_id, caller.user_id);
        let (refresh, user) = self
            .store
            .write(move |tx| {
                let refresh = sessions::reissue(tx, sid, Timestamp::now())?;
                Ok((refresh, users::get(tx, uid)?))
            })
            .await?;
        match (refresh, user) {
            (Some(next), Some(user)) => {
                let (access_token, expires_in) = self.keys.issue(user.id, sid, user.role, user.customer_id)?;
                Ok(Issued { access_token, expires_in, refresh_token: next, cookies: None, user })
            }
            _ => Err(Error::unauthorized("the session has ended")),
        }
    }

    /// Ends the caller's session.
    pub async fn logout(&self, caller: &Principal) -> Result<()> {
        let sid = caller.session_id;
        self.store
            .write(move |tx| match sessions::get(tx, sid)? {
                Some(session) => {
                    sessions::revoke(tx, &session)?;
                    portal_core::audit::record(tx, "auth", "sign_out", session.user_id, None)
                }
                None => Ok(()),
            })
            .await
    }

    /// Sends a reset link when the email belongs to an active user. Runs in the background so the
    /// answer (and its timing) is the same whether or not the account exists.
    pub fn request_password_reset(self: &Arc<Self>, email: &str) -> Result<()> {
        let this = Arc::clone(self);
        let email = users::normalize_email(email);
        self.limiter.check_account(&email)?;
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(&email).await {
                tracing::warn!(error = %e, "password reset mail not sent");
            }
        });
        Ok(())
    }

    async fn send_reset(&self, email: &str) -> Result<()> {
        let lookup = email.to_string();
        let token = self
            .store
            .write(move |tx| match users::by_email(tx, &lookup)? {
                Some(user) if !user.disabled => create_reset_token(tx, user.id, RESET_TTL_SECS).map(Some),
                _ => Ok(None),
            })
            .await?;
        let Some(token) = token else { return Ok(()) };
        let link = self.link(&format!("/reset-password?token={token}"));
        let body = format!(
            "Someone asked to reset the password of your Portal account.\n\n\
             Set a new password within 30 minutes: {link}\n\nReset token: {token}\n\n\
             If this was not you, ignore this mail; your password stays as it is.\n"
        );
        if let Err(e) = self.notifier.send_email(email, "Reset your Portal password", &body).await {
            // Nobody received the token: withdraw it rather than leave a live one behind.
            self.store.write(move |tx| remove_reset_token(tx, &token)).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Sets a new password with a reset (or invitation) token; every session of the user ends.
    pub async fn confirm_password_reset(&self, token: &str, new_password: &str) -> Result<()> {
        let key = sha256(token);
        let user = self
            .store
            .read_blocking(|tx| match RESET_TOKENS.get(tx, &key)? {
                Some(entry) if Timestamp::now() < entry.expires_at => users::get(tx, entry.user_id),
                _ => Ok(None),
            })?
            .ok_or_else(|| Error::invalid("token", "invalid or expired reset token"))?;
        password::check_policy(new_password, &user.email).map_err(|why| Error::invalid("new_password", why))?;
        let hash = password::hash(new_password.to_string()).await?;
        self.store
            .write(move |tx| {
                // Re-checked inside the write: the token is single use even under concurrent confirms.
                if !RESET_TOKENS.remove(tx, &key)? {
                    return Err(Error::invalid("token", "invalid or expired reset token"));
                }
                let mut updated = users::get(tx, user.id)?.ok_or_else(|| Error::not_found("user"))?;
                updated.password_hash = Some(hash.clone());
                updated.updated_at = Timestamp::now();
                USERS.insert(tx, &updated.id.to_key(), &updated)?;
                sessions::revoke_all(tx, updated.id, None)?;
                Ok(())
            })
            .await?;
        tracing::info!(user_id = %user.id, "password reset; all sessions ended");
        Ok(())
    }

    /// Sends a 6-digit sign-in code when the email or phone belongs to an active user (in the
    /// background: the answer is the same either way).
    pub fn request_code(
        self: &Arc<Self>,
        email: Option<String>,
        phone: Option<String>,
        channel: Channel,
    ) -> Result<()> {
        self.limiter.check_account(&account_key(email.as_deref(), phone.as_deref()))?;
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.send_code(email, phone, channel).await {
                tracing::warn!(error = %e, "sign-in code not sent");
            }
        });
        Ok(())
    }

    async fn send_code(&self, email: Option<String>, phone: Option<String>, channel: Channel) -> Result<()> {
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        let keys_code = code.clone();
        let now = Timestamp::now();
        let user = self.store.read_blocking(|tx| {
            let user = find_user(tx, email.as_deref(), phone.as_deref())?;
            // No code for a locked factor: it could not be used.
            match user {
                Some(u) if lockout::locked_until(tx, u.id, Factor::SignInCode, now)?.is_some() => Ok(None),
                other => Ok(other),
            }
        })?;
        let Some(user) = user.filter(|u| !u.disabled) else { return Ok(()) };
        let entry = SignInCode {
            code_mac: self.keys.code_mac(user.id, &keys_code)?,
            expires_at: Timestamp::now().plus_secs(CODE_TTL_SECS),
            attempts: 0,
        };
        if channel == Channel::Sms && user.phone.is_none() {
            return Ok(());
        }
        let (key, new_mac) = (user.id.to_key(), entry.code_mac);
        let previous = self
            .store
            .write(move |tx| {
                let previous = SIGN_IN_CODES.get(tx, &key)?;
                SIGN_IN_CODES.insert(tx, &key, &entry)?;
                Ok(previous)
            })
            .await?;
        let text = format!("Your Portal sign-in code is {code}. It expires in 10 minutes.");
        let sent = match (channel, &user.phone) {
            (Channel::Sms, Some(phone)) => self.notifier.send_sms(phone, &text).await,
            _ => self.notifier.send_email(&user.email, "Your Portal sign-in code", &text).await,
        };
        if let Err(e) = sent {
            // The new code never reached its user: the one sent before it, if any, goes on working.
            let key = user.id.to_key();
            self.store
                .write(move |tx| {
                    if SIGN_IN_CODES.get(tx, &key)?.is_some_and(|current| current.code_mac == new_mac) {
                        match &previous {
                            Some(previous) => SIGN_IN_CODES.insert(tx, &key, previous)?,
                            None => drop(SIGN_IN_CODES.remove(tx, &key)?),
                        }
                    }
                    Ok(())
                })
                .await?;
            return Err(e);
        }
        Ok(())
    }

    /// Signs in with a one-time code (a user with 2FA still gets the challenge). Every wrong code counts
    /// against the factor's budget, whether or not a code is pending, and an address without an account
    /// is counted under its stand-in id: the same reads and writes either way, so neither the answer nor
    /// its time tells whether the address has an account.
    pub async fn verify_code(&self, email: Option<String>, phone: Option<String>, code: &str) -> Result<SignIn> {
        #[allow(clippy::large_enum_variant)] // one per call, consumed at once
        enum Outcome {
            Passed(User),
            Failed,
            /// This wrong code spent the factor's budget: locked until then.
            JustLocked(Option<User>, Timestamp),
        }
        let account = account_key(email.as_deref(), phone.as_deref());
        self.limiter.check_account(&account)?;
        let user = self.store.read_blocking(|tx| find_user(tx, email.as_deref(), phone.as_deref()))?;
        let subject = match &user {
            Some(user) => user.id,
            None => self.keys.stranger_id(&account)?,
        };
        let presented = self.keys.code_mac(subject, code.trim())?;
        let outcome = self
            .store
            .write(move |tx| {
                let now = Timestamp::now();
                let key = subject.to_key();
                // Locked: every code is wrong, and the answer is the same as for one.
                if lockout::locked_until(tx, subject, Factor::SignInCode, now)?.is_some() {
                    return Ok(Outcome::Failed);
                }
                match SIGN_IN_CODES.get(tx, &key)? {
                    Some(entry) if now >= entry.expires_at || entry.attempts >= MAX_ATTEMPTS => {
                        SIGN_IN_CODES.remove(tx, &key)?;
                    }
                    Some(entry) if bool::from(entry.code_mac.ct_eq(&presented)) => {
                        SIGN_IN_CODES.remove(tx, &key)?;
                        lockout::passed(tx, subject, Factor::SignInCode)?;
                        // Codes are stored for accounts only.
                        if let Some(user) = &user {
                            return Ok(Outcome::Passed(user.clone()));
                        }
                    }
                    Some(mut entry) => {
                        entry.attempts += 1;
                        SIGN_IN_CODES.insert(tx, &key, &entry)?;
                    }
                    None => {}
                }
                match lockout::failed(tx, subject, Factor::SignInCode, now)? {
                    Some(until) => Ok(Outcome::JustLocked(user.clone(), until)),
                    None => Ok(Outcome::Failed),
                }
            })
            .await?;
        match outcome {
            Outcome::Passed(user) => self.first_factor_passed(user).await,
            Outcome::Failed => Err(Error::unauthorized("invalid or expired code")),
            Outcome::JustLocked(user, until) => {
                if let Some(user) = user {
                    self.tell_factor_locked(user, Factor::SignInCode, until);
                }
                Err(Error::unauthorized("invalid or expired code"))
            }
        }
    }

    /// Mails the user, in the background, that a factor of its account was locked after too many wrong codes.
    fn tell_factor_locked(&self, user: User, factor: Factor, until: Timestamp) {
        let body = format!(
            "Too many wrong {} were entered for your Portal account, so signing in with them is locked until \
             {}. If this was not you, someone may know your password or your email: change your password.",
            factor.name(),
            until.datetime().format("%Y-%m-%d %H:%M UTC")
        );
        tracing::warn!(user_id = %user.id, factor = factor.name(), "sign-in factor locked after too many wrong codes");
        let notifier = self.notifier.clone();
        tokio::spawn(async move {
            if let Err(e) = notifier.send_email(&user.email, "Sign-in locked on your Portal account", &body).await {
                tracing::warn!(user_id = %user.id, error = %e, "the lock notice was not sent");
            }
        });
    }

    /// Ends expired sessions and forgets expired challenges, codes, reset tokens and registrations.
    pub async fn sweep(&self) -> Result<usize> {
        let policy = self.policy;
        self.store
            .write(move |tx| {
                let now = Timestamp::now();
                let mut removed = sessions::sweep(tx, &policy, now)?;
                removed += sweep_expired(tx, &CHALLENGES, now, |c: &Challenge| c.expires_at)?;
                removed += sweep_expired(tx, &RESET_TOKENS, now, |r: &ResetToken| r.expires_at)?;
                removed += sweep_expired(tx, &SIGN_IN_CODES, now, |c: &SignInCode| c.expires_at)?;
                removed += Self::sweep_registrations(tx, now)?;
                removed += lockout::sweep(tx, now)?;
                Ok(removed)
            })
            .await
    }
}

fn sweep_expired<V: portal_core::Record>(
    tx: &portal_core::WriteTx,
    table: &portal_core::Table<V>,
    now: Timestamp,
    expires: impl Fn(&V) -> Timestamp,
) -> Result<usize> {
    let mut keys = Vec::new();
    table.scan_prefix(tx, &[], |k, v| {
        if expires(&v) <= now {
            keys.push(k.to_vec());
        }
        Ok::<_, portal_core::Error>(true)
    })?;
    for k in &keys {
        table.remove(tx, k)?;
    }
    Ok(keys.len())
}

/// The account a code route targets, as the per-account limit knows it.
fn account_key(email: Option<&str>, phone: Option<&str>) -> String {
    match (email, phone) {
        (Some(email), _) => users::normalize_email(email),
        (None, Some(phone)) => phone.trim().to_string(),
        (None, None) => String::new(),
    }
}

fn find_user(tx: &impl portal_core::ReadTx, email: Option<&str>, phone: Option<&str>) -> Result<Option<User>> {
    match (email, phone) {
        (Some(email), _) => users::by_email(tx, email),
        (None, Some(phone)) => users::by_phone(tx, phone),
        (None, None) => Ok(None),
    }
}

/// A single-use token that lets its holder set the user's password (reset mails and invitations).
pub(crate) fn create_reset_token(tx: &portal_core::WriteTx, user: UserId, ttl_secs: i64) -> Result<String> {
    let token = random_token();
    RESET_TOKENS.insert(
        tx,
        &sha256(&token),
        &ResetToken { user_id: user, expires_at: Timestamp::now().plus_secs(ttl_secs) },
    )?;
    Ok(token)
}

/// Withdraws a reset or invitation token (its mail could not be sent, so nobody holds it).
pub(crate) fn remove_reset_token(tx: &portal_core::WriteTx, token: &str) -> Result<bool> {
    Ok(RESET_TOKENS.remove(tx, &sha256(token))?)
}

/// A new user record (not yet stored).
pub fn new_user(
    email: String,
    name: String,
    role: Role,
    customer_id: Option<portal_core::ids::CustomerId>,
    password_hash: Option<String>,
) -> User {
    let now = Timestamp::now();
    User {
        id: UserId::generate(),
        email,
        name,
        phone: None,
        role,
        customer_id,
        password_hash,
        two_factor: Default::default(),
        settings: Settings::default(),
        disabled: false,
        created_at: now,
        updated_at: now,
    }
}
