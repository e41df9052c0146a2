//! The `/auth` endpoints and the user profile shape they return.

use std::sync::Arc;
use std::time::Duration;

use poem::web::cookie::{Cookie, CookieJar, SameSite};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi, Tags, Union};
use portal_core::auth::SESSION_COOKIE;
use portal_core::ids::{CustomerId, UserId};
use portal_core::responses::{Accepted, NoContent};
use portal_core::{Auth, Error, JsonBody, MaybeAuth, Role, Timestamp};

use crate::authn::CSRF_COOKIE;
use crate::model::{Notifications, Settings, User};
use crate::service::{AuthService, Channel, Issued, SignIn};

#[derive(Tags)]
enum AuthTag {
    /// Sign-in, sessions, tokens, two-factor authentication and password reset
    Authentication,
}

/// Notification choices.
#[derive(Debug, Clone, Object)]
pub struct NotificationSettings {
    /// Mail when an invoice is issued or paid.
    pub invoice_emails: bool,
    /// Mail about new portal features.
    pub product_updates: bool,
    /// SMS on security events (new sign-in, password change).
    pub security_alerts_sms: bool,
}

/// Display preferences and notification choices.
#[derive(Debug, Clone, Object)]
pub struct UserSettingsView {
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// BCP 47 language tag, e.g. `en-US`.
    pub locale: String,
    pub notifications: NotificationSettings,
}

impl From<&Settings> for UserSettingsView {
    fn from(s: &Settings) -> Self {
        let n: &Notifications = &s.notifications;
        Self {
            timezone: s.timezone.clone(),
            locale: s.locale.clone(),
            notifications: NotificationSettings {
                invoice_emails: n.invoice_emails,
                product_updates: n.product_updates,
                security_alerts_sms: n.security_alerts_sms,
            },
        }
    }
}

/// A user's profile.
#[derive(Debug, Clone, Object)]
pub struct UserProfile {
    pub id: UserId,
    pub email: String,
    pub name: String,
    /// E.164 phone number.
    #[oai(skip_serializing_if_is_none)]
    pub phone: Option<String>,
    pub role: Role,
    /// The customer a customer user belongs to.
    #[oai(skip_serializing_if_is_none)]
    pub customer_id: Option<CustomerId>,
    pub two_factor_enabled: bool,
    pub settings: UserSettingsView,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&User> for UserProfile {
    fn from(u: &User) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            phone: u.phone.clone(),
            role: u.role,
            customer_id: u.customer_id,
            two_factor_enabled: u.two_factor.enabled(),
            settings: (&u.settings).into(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct RegisterRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    /// 10–256 characters, not a common password.
    #[oai(validator(max_length = 1024))]
    password: String,
    #[oai(validator(max_length = 1024))]
    name: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct LoginRequest {
    #[oai(validator(max_length = 254))]
    email: String,
    #[oai(validator(max_length = 1024))]
    password: String,
}

/// A completed sign-in. The `portal_session` and `portal_csrf` cookies are set as well.
#[derive(Debug, Object)]
struct TokenResponse {
    /// Access JWT, valid `expires_in` seconds.
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    expires_in: i64,
    /// Single-use: trade it at `/auth/refresh` for new tokens.
    refresh_token: String,
    user: UserProfile,
}

impl From<Issued> for TokenResponse {
    fn from(i: Issued) -> Self {
        Self {
            access_token: i.access_token,
            token_type: "Bearer".into(),
            expires_in: i.expires_in,
            refresh_token: i.refresh_token,
            user: (&i.user).into(),
        }
    }
}

/// The password was right; complete the sign-in at `/auth/verify-2fa` with a TOTP or recovery code.
#[derive(Debug, Object)]
struct TwoFactorChallenge {
    /// Always `true`.
    two_factor_required: bool,
    challenge_token: String,
    expires_in: i64,
}

/// Tokens, or the second-factor challenge when the user has 2FA on.
#[derive(Debug, Union)]
#[allow(clippy::large_enum_variant)] // built once per sign-in and serialized at once
enum LoginResult {
    Tokens(TokenResponse),
    TwoFactor(TwoFactorChallenge),
}

/// The password of the signed-in user, asked again before 2FA is set up (a session alone, say on a
/// borrowed computer, must not be enough to tie the account to someone else's authenticator).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct EnableTwoFactorRequest {
    #[oai(validator(max_length = 1024))]
    current_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct VerifyTwoFactorRequest {
    /// From a login answer; omit it (while signed in) to confirm a pending enrolment.
    #[oai(validator(max_length = 128))]
    challenge_token: Option<String>,
    /// A 6-digit TOTP code, or a recovery code during sign-in.
    #[oai(validator(max_length = 32))]
    code: String,
}

/// 2FA is on; keep the recovery codes somewhere safe: each works once, and they are not shown again.
#[derive(Debug, Object)]
struct TwoFactorEnabled {
    enabled: bool,
    recovery_codes: Vec<String>,
}

#[derive(Debug, Union)]
#[allow(clippy::large_enum_variant)] // built once per call and serialized at once
enum VerifyTwoFactorResult {
    Tokens(TokenResponse),
    Enabled(TwoFactorEnabled),
}

/// Add this to an authenticator app, then confirm with its first code at `/auth/verify-2fa`.
#[derive(Debug, Object)]
struct EnableTwoFactorResponse {
    /// Base32 secret, for manual entry.
    secret: String,
    otpauth_uri: String,
    qr_code_png_base64: String,
}

#[derive(Debug, Object)]
struct TwoFactorStatus {
    enabled: bool,
    #[oai(skip_serializing_if_is_none)]
    confirmed_at: Option<Timestamp>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct RefreshRequest {
    /// The current refresh token; omit it when signed in with the session cookie.
    #[oai(validator(max_length = 128))]
    refresh_token: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct PasswordResetRequest {
    #[oai(validator(max_length = 254))]
    email: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct PasswordResetConfirm {
    #[oai(validator(max_length = 128))]
    token: String,
    #[oai(validator(max_length = 1024))]
    new_password: String,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "lowercase")]
enum CodeChannel {
    Email,
    Sms,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct RequestCodeRequest {
    #[oai(validator(max_length = 254))]
    email: Option<String>,
    /// E.164.
    #[oai(validator(max_length = 32))]
    phone: Option<String>,
    channel: CodeChannel,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct VerifyCodeRequest {
    #[oai(validator(max_length = 254))]
    email: Option<String>,
    #[oai(validator(max_length = 32))]
    phone: Option<String>,
    #[oai(validator(max_length = 16))]
    code: String,
}

/// A registration waiting for its address to be confirmed.
#[derive(Debug, Object)]
struct RegistrationPending {
    /// Where the confirmation link was sent (normalised to lower case).
    email: String,
    /// Seconds the link works.
    expires_in: i64,
}

#[derive(poem_openapi::ApiResponse)]
enum RegisterResponse {
    /// The confirmation link is on its way; the account exists once it is followed.
    #[oai(status = 202)]
    Accepted(Json<RegistrationPending>),
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ConfirmRegistrationRequest {
    /// The token of the confirmation link.
    #[oai(validator(max_length = 128))]
    token: String,
}

#[derive(poem_openapi::ApiResponse)]
enum ConfirmRegistrationResponse {
    /// The new user.
    #[oai(status = 201)]
    Created(Json<UserProfile>),
}

pub struct AuthApi {
    service: Arc<AuthService>,
}

impl AuthApi {
    pub fn new(service: Arc<AuthService>) -> Self {
        Self { service }
    }

    fn set_session_cookies(&self, jar: &CookieJar, session: &str, csrf: &str) {
        let max_age = Duration::from_secs(u64::try_from(self.service.session_secs()).unwrap_or(0));
        for (name, value, http_only) in [(SESSION_COOKIE, session, true), (CSRF_COOKIE, csrf, false)] {
            let mut cookie = Cookie::new_with_str(name, value);
            cookie.set_http_only(http_only);
            cookie.set_secure(self.service.secure_cookies());
            cookie.set_same_site(SameSite::Lax);
            cookie.set_path("/");
            cookie.set_max_age(max_age);
            jar.add(cookie);
        }
    }

    fn clear_session_cookies(&self, jar: &CookieJar) {
        for name in [SESSION_COOKIE, CSRF_COOKIE] {
            let mut cookie = Cookie::new_with_str(name, "");
            cookie.set_path("/");
            cookie.set_max_age(Duration::ZERO);
            jar.add(cookie);
        }
    }

    fn signed_in(&self, sign_in: SignIn, jar: &CookieJar) -> LoginResult {
        match sign_in {
            SignIn::Done(issued) => {
                if let Some((session, csrf)) = &issued.cookies {
                    self.set_session_cookies(jar, session, csrf);
                }
                LoginResult::Tokens(issued.into())
            }
            SignIn::TwoFactor { challenge_token, expires_in } => {
                LoginResult::TwoFactor(TwoFactorChallenge { two_factor_required: true, challenge_token, expires_in })
            }
        }
    }
}

/// Exactly one way to find the user: an email or a phone number.
fn identifier(email: Option<String>, phone: Option<String>) -> Result<(Option<String>, Option<String>), Error> {
    match (email, phone) {
        (None, None) => Err(Error::invalid("email", "give an email or a phone number")),
        (Some(email), _) => {
            crate::users::validate_email(&crate::users::normalize_email(&email))
                .map_err(|why| Error::invalid("email", why))?;
            Ok((Some(email), None))
        }
        (None, Some(phone)) => {
            crate::users::validate_phone(phone.trim()).map_err(|why| Error::invalid("phone", why))?;
            Ok((None, Some(phone.trim().to_string())))
        }
    }
}

#[OpenApi(prefix_path = "/auth", tag = "AuthTag::Authentication")]
impl AuthApi {
    /// Register
    ///
    /// Mails a confirmation link (valid 24 hours) to the address; following it (`/auth/verify-email`)
    /// creates a customer-role user with no customer attached yet (an admin attaches one). The answer is
    /// the same for an address that has an account: its owner gets a mail saying so. Passwords are
    /// 10–256 characters and not a common password. Off when `PORTAL_REGISTRATION=closed` (403).
    #[oai(path = "/register", method = "post")]
    async fn register(&self, body: JsonBody<RegisterRequest>) -> Result<RegisterResponse, Error> {
        let body = body.into_inner()?;
        self.service.register(&body.email, &body.password, &body.name).await?;
        let email = crate::users::normalize_email(&body.email);
        Ok(RegisterResponse::Accepted(Json(RegistrationPending {
            email,
            expires_in: crate::service::CONFIRM_TTL_SECS,
        })))
    }

    /// Confirm a registration
    ///
    /// Creates the account of the registration whose mailed link carried `token`; the user can sign in
    /// from then on. The token works once; 409 when the address got an account meanwhile.
    #[oai(path = "/verify-email", method = "post")]
    async fn verify_email(
        &self,
        body: JsonBody<ConfirmRegistrationRequest>,
    ) -> Result<ConfirmRegistrationResponse, Error> {
        let body = body.into_inner()?;
        let user = self.service.confirm_registration(&body.token).await?;
        Ok(ConfirmRegistrationResponse::Created(Json((&user).into())))
    }

    /// Sign in with email and password
    ///
    /// Answers the tokens and sets the `portal_session` (HttpOnly) and `portal_csrf` cookies; with 2FA on,
    /// answers a challenge for `/auth/verify-2fa` instead. A wrong email or password answers the same 401
    /// in the same time.
    #[oai(path = "/login", method = "post")]
    async fn login(&self, body: JsonBody<LoginRequest>, jar: &CookieJar) -> Result<Json<LoginResult>, Error> {
        let body = body.into_inner()?;
        let sign_in = self.service.login(&body.email, &body.password).await?;
        Ok(Json(self.signed_in(sign_in, jar)))
    }

    /// Sign out
    ///
    /// Ends the current session: its access tokens, refresh token and cookie stop working at once.
    #[oai(path = "/logout", method = "post")]
    async fn logout(&self, auth: Auth, jar: &CookieJar) -> Result<NoContent, Error> {
        self.service.logout(&auth.0).await?;
        self.clear_session_cookies(jar);
        Ok(NoContent::NoContent)
    }

    /// Refresh the session
    ///
    /// Trades the current refresh token (or, signed in with the session cookie, the session itself) for a
    /// new access token and a new refresh token. A refresh token works once: presenting a used one ends
    /// the whole session.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(&self, body: JsonBody<RefreshRequest>, auth: MaybeAuth) -> Result<Json<TokenResponse>, Error> {
        let body = body.into_inner()?;
        let issued = match (&body.refresh_token, auth.0) {
            (Some(token), _) => self.service.refresh(token).await?,
            (None, Some(caller)) if caller.credential == portal_core::auth::Credential::Cookie => {
                self.service.refresh_session(&caller).await?
            }
            (None, _) => {
                return Err(Error::invalid("refresh_token", "required unless signed in with the session cookie"))
            }
        };
        Ok(Json(issued.into()))
    }

    /// Request a password reset mail
    ///
    /// 202 whether or not the email belongs to an account (429 past the per-IP or per-account limit). The mail carries a single-use token
    /// valid for 30 minutes.
    #[oai(path = "/password-reset", method = "post")]
    async fn password_reset(&self, body: JsonBody<PasswordResetRequest>) -> Result<Accepted, Error> {
        let body = body.into_inner()?;
        self.service.request_password_reset(&body.email)?;
        Ok(Accepted::Accepted)
    }

    /// Set a new password with a reset token
    ///
    /// The token works once; every session of the user ends.
    #[oai(path = "/password-reset/confirm", method = "post")]
    async fn password_reset_confirm(&self, body: JsonBody<PasswordResetConfirm>) -> Result<NoContent, Error> {
        let body = body.into_inner()?;
        self.service.confirm_password_reset(&body.token, &body.new_password).await?;
        Ok(NoContent::NoContent)
    }

    /// Verify a TOTP code
    ///
    /// With `challenge_token` (from login): completes the sign-in with a TOTP or recovery code (5 wrong
    /// codes end the challenge; a code works once). Without it, signed in: confirms the enrolment started
    /// by `/auth/enable-2fa` and returns 10 recovery codes.
    #[oai(path = "/verify-2fa", method = "post")]
    async fn verify_2fa(
        &self,
        body: JsonBody<VerifyTwoFactorRequest>,
        auth: MaybeAuth,
        jar: &CookieJar,
    ) -> Result<Json<VerifyTwoFactorResult>, Error> {
        let body = body.into_inner()?;
        match (&body.challenge_token, auth.0) {
            (Some(challenge), _) => {
                let issued = self.service.verify_challenge(challenge, &body.code).await?;
                match self.signed_in(SignIn::Done(issued), jar) {
                    LoginResult::Tokens(tokens) => Ok(Json(VerifyTwoFactorResult::Tokens(tokens))),
                    LoginResult::TwoFactor(_) => Err(Error::internal("a verified challenge asked for 2FA again")),
                }
            }
            (None, Some(caller)) => {
                let recovery_codes = self.service.confirm_enrolment(&caller, &body.code).await?;
                Ok(Json(VerifyTwoFactorResult::Enabled(TwoFactorEnabled { enabled: true, recovery_codes })))
            }
            (None, None) => {
                Err(Error::unauthorized("send the challenge_token from login, or sign in to confirm enrolment"))
            }
        }
    }

    /// Start two-factor enrolment
    ///
    /// Asks for the user's password (a wrong one → 422 naming `current_password`) and returns a new TOTP
    /// secret (also as an `otpauth://` URI and a QR code PNG). 2FA turns on only when its first code is
    /// confirmed at `/auth/verify-2fa`.
    #[oai(path = "/enable-2fa", method = "post")]
    async fn enable_2fa(
        &self,
        auth: Auth,
        body: JsonBody<EnableTwoFactorRequest>,
    ) -> Result<Json<EnableTwoFactorResponse>, Error> {
        let body = body.into_inner()?;
        let e = self.service.begin_enrolment(&auth.0, &body.current_password).await?;
        Ok(Json(EnableTwoFactorResponse { secret: e.secret, otpauth_uri: e.uri, qr_code_png_base64: e.qr_png_base64 }))
    }

    /// Two-factor status
    #[oai(path = "/2fa-status", method = "get")]
    async fn two_factor_status(&self, auth: Auth) -> Result<Json<TwoFactorStatus>, Error> {
        let user = self.service.user(auth.0.user_id).await?;
        Ok(Json(TwoFactorStatus { enabled: user.two_factor.enabled(), confirmed_at: user.two_factor.confirmed_at }))
    }

    /// Request a one-time sign-in code
    ///
    /// 202 whether or not the email or phone belongs to an account (429 past the per-IP or per-account
    /// limit). Sends a 6-digit code (valid 10 minutes, 5 attempts) by mail or SMS when it does, and its
    /// sign-in codes are not locked.
    #[oai(path = "/request-code", method = "post")]
    async fn request_code(&self, body: JsonBody<RequestCodeRequest>) -> Result<Accepted, Error> {
        let body = body.into_inner()?;
        let (email, phone) = identifier(body.email, body.phone)?;
        let channel = match body.channel {
            CodeChannel::Email => Channel::Email,
            CodeChannel::Sms => Channel::Sms,
        };
        self.service.request_code(email, phone, channel)?;
        Ok(Accepted::Accepted)
    }

    /// Sign in with a one-time code
    ///
    /// Answers like `/auth/login` (a user with 2FA on still gets the challenge).
    #[oai(path = "/verify-code", method = "post")]
    async fn verify_code(
        &self,
        body: JsonBody<VerifyCodeRequest>,
        jar: &CookieJar,
    ) -> Result<Json<LoginResult>, Error> {
        let body = body.into_inner()?;
        let (email, phone) = identifier(body.email, body.phone)?;
        let sign_in = self.service.verify_code(email, phone, &body.code).await?;
        Ok(Json(self.signed_in(sign_in, jar)))
    }
}
