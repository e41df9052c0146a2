//! Billing's settings (`portal serve` flattens them).

use clap::Args;

/// When invoice reminders go out.
#[derive(Debug, Clone, Args)]
pub struct BillingConfig {
    /// Days from an invoice's due date on which an unpaid invoice's customer is reminded: negative before
    /// it, 0 on it, positive after it. `none` sends no reminders.
    #[arg(long, env = "PORTAL_INVOICE_REMINDER_DAYS", default_value = "-3,0,3,7,14", value_parser = ReminderDays::parse, allow_hyphen_values = true)]
    pub reminder_days: ReminderDays,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self { reminder_days: ReminderDays(vec![-3, 0, 3, 7, 14]) }
    }
}

/// A reminder schedule: distinct days from the due date, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderDays(Vec<i32>);

impl ReminderDays {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        let mut days = Vec::new();
        for part in text.split(',') {
            let day: i32 = part.trim().parse().map_err(|_| format!("{part:?} is not a whole number of days"))?;
            if !(-90..=365).contains(&day) {
                return Err(format!("{day} is outside -90..=365 days"));
            }
            days.push(day);
        }
        days.sort_unstable();
        days.dedup();
        Ok(Self(days))
    }

    pub fn days(&self) -> &[i32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_sorted_and_checked() {
        assert_eq!(ReminderDays::parse("7, -3,0,7").unwrap().days(), [-3, 0, 7]);
        assert_eq!(ReminderDays::parse("none").unwrap().days(), [] as [i32; 0]);
        assert!(ReminderDays::parse("3,x").is_err());
        assert!(ReminderDays::parse("400").is_err());
    }
}
