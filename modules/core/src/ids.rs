//! Typed ids: UUID v7 (time ordered) carried in newtypes so a customer id can never be passed where an
//! invoice id is expected. Stored as 16 big-endian bytes, so key order is creation order.

/// Declares an id newtype with serde, OpenAPI (`string`, format `uuid`) and key-bytes support.
#[macro_export]
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize, poem_openapi::NewType,
        )]
        #[serde(transparent)]
        pub struct $name(pub $crate::uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self($crate::uuid::Uuid::now_v7())
            }

            /// The 16 key bytes.
            pub fn to_key(&self) -> [u8; 16] {
                *self.0.as_bytes()
            }

            pub fn from_key(bytes: &[u8]) -> Option<Self> {
                $crate::uuid::Uuid::from_slice(bytes).ok().map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map(Self)
            }
        }
    };
}

id_type!(
    /// A portal user (admin or customer user).
    UserId
);
id_type!(
    /// A customer account (a company).
    CustomerId
);
id_type!(
    /// A sign-in session.
    SessionId
);
