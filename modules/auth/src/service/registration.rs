//! Self-service registration, confirmed by a link mailed to the address. The answer is the same whether
//! or not the address has an account (its owner gets a mail saying so instead), and the account exists only
//! once the link is followed, so nobody can hold an address they cannot read mail for.

use std::sync::Arc;

use crate::config::Registration;
use portal_core::error::Validation;
use portal_core::{Error, Result, Role, Timestamp};

use super::{new_user, sweep_expired, AuthService};
use crate::model::{PendingRegistration, User};
use crate::tables::PENDING_REGISTRATIONS;
use crate::tokens::{random_token, sha256};
use crate::{password, users};

/// How long a registration's confirmation link works.
pub const CONFIRM_TTL_SECS: i64 = 24 * 60 * 60;

impl AuthService {
    /// Checks the request and mails the address in the background: a confirmation link, or, when the
    /// address already has an account, a notice to its owner. Both cost the same password hash here.
    pub async fn register(self: &Arc<Self>, email: &str, password: &str, name: &str) -> Result<()> {
        if self.registration == Registration::Closed {
            return Err(Error::forbidden("registration is closed; ask an administrator for an account"));
        }
        let email = users::normalize_email(email);
        self.limiter.check_account(&email)?;
        let mut v = Validation::default();
        v.check("email", users::validate_email(&email));
        v.check("name", users::validate_name(name));
        v.check("password", password::check_policy(password, &email));
        v.finish()?;
        let password_hash = password::hash(password.to_string()).await?;
        let pending = PendingRegistration {
            email,
            name: name.trim().to_string(),
            password_hash,
            expires_at: Timestamp::now().plus_secs(CONFIRM_TTL_SECS),
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.mail_registration(pending).await {
                tracing::warn!(error = %e, "registration mail not sent");
            }
        });
        Ok(())
    }

    async fn mail_registration(&self, pending: PendingRegistration) -> Result<()> {
        let email = pending.email.clone();
        let token = self
            .store
            .write(move |tx| {
                if users::by_email(tx, &pending.email)?.is_some() {
                    return Ok(None);
                }
                let token = random_token();
                PENDING_REGISTRATIONS.insert(tx, &sha256(&token), &pending)?;
                Ok(Some(token))
            })
            .await?;
        let Some(token) = token else {
            let body = format!(
                "Someone asked to create a Portal account for this address, which already has one.\n\n\
                 If it was you, sign in, or set a new password if you forgot it: {}\n\n\
                 If it was not you, ignore this mail; nothing changed.\n",
                self.link("/reset-password")
            );
            self.notifier.send_email(&email, "You already have a Portal account", &body).await?;
            return Ok(());
        };
        let link = self.link(&format!("/verify-email?token={token}"));
        let body = format!(
            "Confirm your address to finish creating your Portal account (the link works for 24 hours): \
             {link}\n\nConfirmation token: {token}\n\n\
             If you did not ask for an account, ignore this mail; none is created.\n"
        );
        if let Err(e) = self.notifier.send_email(&email, "Confirm your Portal account", &body).await {
            // Nobody received the token: withdraw it rather than leave a live one behind.
            self.store.write(move |tx| Ok(PENDING_REGISTRATIONS.remove(tx, &sha256(&token))?)).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Creates the account of a registration whose link was followed. The token works once; an address
    /// that got an account meanwhile (an invitation, another registration) answers 409.
    pub async fn confirm_registration(&self, token: &str) -> Result<User> {
        let key = sha256(token);
        // None: the address got an account meanwhile.
        let created = self
            .store
            .write(move |tx| {
                let pending = PENDING_REGISTRATIONS
                    .get(tx, &key)?
                    .filter(|p| Timestamp::now() < p.expires_at)
                    .ok_or_else(|| Error::invalid("token", "invalid or expired confirmation token"))?;
                PENDING_REGISTRATIONS.remove(tx, &key)?;
                if users::by_email(tx, &pending.email)?.is_some() {
                    return Ok(None);
                }
                let user = new_user(pending.email, pending.name, Role::Customer, None, Some(pending.password_hash));
                users::insert(tx, &user)?;
                Ok(Some(user))
            })
            .await?;
        let user = created.ok_or_else(|| Error::conflict("this address has an account already: sign in instead"))?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user)
    }

    /// Forgets registrations whose link ran out.
    pub(super) fn sweep_registrations(tx: &portal_core::WriteTx, now: Timestamp) -> Result<usize> {
        sweep_expired(tx, &PENDING_REGISTRATIONS, now, |p: &PendingRegistration| p.expires_at)
    }
}
