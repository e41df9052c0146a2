//! Stored identity records: users, sessions, and the short-lived tokens of sign-in flows. Token values are
//! never stored, only their SHA-256 (or keyed HMAC for short codes).

use portal_core::ids::{CustomerId, SessionId, UserId};
use portal_core::{Record, Role, Timestamp};
use serde::{Deserialize, Serialize};

/// Notification choices of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notifications {
    pub invoice_emails: bool,
    pub product_updates: bool,
    pub security_alerts_sms: bool,
}

impl Default for Notifications {
    fn default() -> Self {
        Self { invoice_emails: true, product_updates: false, security_alerts_sms: false }
    }
}

/// Display preferences and notification choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub timezone: String,
    pub locale: String,
    #[serde(default)]
    pub notifications: Notifications,
}

impl Default for Settings {
    fn default() -> Self {
        Self { timezone: "UTC".into(), locale: "en-US".into(), notifications: Notifications::default() }
    }
}

/// TOTP second factor of a user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TwoFactor {
    /// The confirmed secret; 2FA is on when set.
    pub secret: Option<Vec<u8>>,
    pub confirmed_at: Option<Timestamp>,
    /// A secret handed out by enable-2fa, waiting for its first code.
    pub pending_secret: Option<Vec<u8>>,
    /// The last time step accepted, so a code works once.
    pub last_step: u64,
    /// SHA-256 of each unused recovery code.
    pub recovery_hashes: Vec<[u8; 32]>,
}

impl TwoFactor {
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Lower case; unique across the portal.
    pub email: String,
    pub name: String,
    /// E.164; unique when set (one-time codes by SMS find the user by it).
    pub phone: Option<String>,
    pub role: Role,
    pub customer_id: Option<CustomerId>,
    /// Argon2id PHC string; none until an invited user sets a password.
    pub password_hash: Option<String>,
    #[serde(default)]
    pub two_factor: TwoFactor,
    #[serde(default)]
    pub settings: Settings,
    /// Users of an archived customer cannot sign in.
    #[serde(default)]
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Record for User {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    /// SHA-256 of the `portal_session` cookie value.
    pub cookie_hash: [u8; 32],
    /// SHA-256 of the `portal_csrf` value bound to this session.
    pub csrf_hash: [u8; 32],
    /// SHA-256 of every refresh token issued; the last one is current.
    pub refresh_hashes: Vec<[u8; 32]>,
    /// Who signed in: what every request of the session may do, whatever its access token claims. Absent
    /// in sessions opened before it was recorded (their user is read instead).
    #[serde(default)]
    pub holder: Option<Holder>,
}

/// The role and customer of a session's user, as they were when it signed in (neither changes for a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub role: Role,
    pub customer_id: Option<CustomerId>,
}

impl Record for Session {}

/// Where a refresh token (by hash) belongs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshEntry {
    pub session_id: SessionId,
}

impl Record for RefreshEntry {}

/// A password that was right, waiting for the second factor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub user_id: UserId,
    pub expires_at: Timestamp,
    pub failures: u32,
}

impl Record for Challenge {}

/// Wrong codes of one factor (TOTP, or one-time sign-in codes) of one user, across challenges and codes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FactorFailures {
    /// When the current counting window began.
    pub since: Option<Timestamp>,
    pub failures: u32,
    /// Set when the budget ran out: the factor refuses every code until then.
    pub locked_until: Option<Timestamp>,
}

impl Record for FactorFailures {}

/// A password-reset (or invitation) token, by hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResetToken {
    pub user_id: UserId,
    pub expires_at: Timestamp,
}

impl Record for ResetToken {}

/// A registration waiting for its address to be confirmed, by the hash of the link's token. The account
/// exists only once the link is followed, so an unconfirmed address blocks nobody.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingRegistration {
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub expires_at: Timestamp,
}

impl Record for PendingRegistration {}

/// A one-time sign-in code sent by mail or SMS, per user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInCode {
    pub code_mac: [u8; 32],
    pub expires_at: Timestamp,
    pub attempts: u32,
}

impl Record for SignInCode {}
