//! Saving cards through Stripe SetupIntents. The browser confirms the intent with Stripe.js, so card
//! details never reach the portal; the portal then checks that the intent is its customer's and succeeded
//! before it charges or records the card.

use portal_core::{Error, Result, Store, Timestamp};
use portal_customers::CustomerScope;
use portal_stripe::{SetupIntent, Stripe};

use crate::collect;

/// A new SetupIntent for the customer (and its Stripe customer on first use). `make_default: false` keeps
/// the card from becoming the default when Stripe reports the setup.
pub async fn start(store: &Store, stripe: &Stripe, scope: &CustomerScope, make_default: bool) -> Result<SetupIntent> {
    let stripe_customer = collect::stripe_customer(store, stripe, scope).await?;
    let key = format!("portal-setup-{}-{}", scope.id(), Timestamp::now().micros());
    stripe.create_setup_intent(&stripe_customer, &key, make_default).await
}

/// The card a SetupIntent saved, once it has succeeded for this customer; attached to the customer if the
/// confirmation left it unattached. Another customer's intent or card → 422, as if it did not exist.
pub async fn confirmed(store: &Store, stripe: &Stripe, scope: &CustomerScope, setup_intent_id: &str) -> Result<String> {
    let not_ours = || Error::invalid("setup_intent_id", "no card setup of this customer has that id");
    let stripe_customer = collect::stripe_customer(store, stripe, scope).await?;
    let intent = stripe.setup_intent(setup_intent_id).await?;
    if intent.customer.as_deref() != Some(stripe_customer.as_str()) {
        return Err(not_ours());
    }
    let (Some(card), "succeeded") = (intent.payment_method, intent.status.as_str()) else {
        return Err(Error::conflict("the card is not confirmed yet"));
    };
    match stripe.payment_method_owner(&card).await? {
        Some(owner) if owner == stripe_customer => {}
        Some(_) => return Err(not_ours()),
        None => stripe.attach(&card, &stripe_customer).await?,
    }
    Ok(card)
}

/// Makes a confirmed card the customer's default (what automatic charges and the pay page's saved-card
/// button use).
pub async fn make_default(store: &Store, scope: &CustomerScope, card: String) -> Result<()> {
    let id = scope.id();
    store.write(move |tx| portal_customers::service::set_default_payment_method(tx, id, &card)).await
}
