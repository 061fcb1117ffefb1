//! Out-of-band approval: what `mcp-multiplayer approve` does.
//!
//! The approval page can be answered with the passphrase, which strangers
//! can guess at (slowly, see `limits`). Whoever can run commands on the
//! server as the service user can also approve without it: the page shows a
//! short code, `mcp-multiplayer approve` lists the sign-ins waiting, and
//! `mcp-multiplayer approve CODE` approves one; the browser then continues.
//! This works while the daemon runs (both use the same database) and needs
//! no passphrase, so no amount of guessing on the page can lock the
//! operator out.

use super::grants::{self, Decision, PendingSummary};
use super::redirect;
use crate::store::{Store, StoreError};
use thiserror::Error;

/// Why an `approve` command failed.
#[derive(Debug, Error)]
pub enum ApproveError {
    #[error("{0:?} is not a sign-in code (they look like K7QF-2M9X)")]
    BadCode(String),
    #[error(
        "no sign-in {0} is waiting (it expired after 10 minutes, was answered, or the code is mistyped); run `mcp-multiplayer approve` to list them"
    )]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every sign-in waiting for approval, as text for the terminal.
pub async fn list(store: &Store) -> Result<String, ApproveError> {
    let waiting = grants::list_pending(store).await?;
    if waiting.is_empty() {
        return Ok("No sign-in is waiting for approval.\n".into());
    }
    let now = crate::secrets::now_ms();
    let mut out = String::from("Sign-ins waiting for approval (oldest first):\n");
    for w in &waiting {
        out.push_str(&format!(
            "\n  {}{}\n    {}\n    returns to {}\n    from {}, {} ago\n",
            w.id,
            if w.approved {
                "  (approved: press Continue on the page)"
            } else {
                ""
            },
            describe_client(w),
            redirect::destination(&w.redirect_uri),
            w.requested_from,
            age((now - w.created_at).max(0) / 1000),
        ));
    }
    out.push_str(
        "\nCheck that the code matches the one on your approval page, then run\n  mcp-multiplayer approve CODE\n",
    );
    Ok(out)
}

/// Approves or denies the waiting sign-in `code`; returns what to print.
pub async fn decide(store: &Store, code: &str, deny: bool) -> Result<String, ApproveError> {
    let id = grants::normalise_pending_code(code)
        .ok_or_else(|| ApproveError::BadCode(code.to_string()))?;
    let decision = if deny {
        Decision::Deny
    } else {
        Decision::Approve
    };
    let w = grants::decide_pending(store, &id, decision)
        .await?
        .ok_or_else(|| ApproveError::Unknown(id.clone()))?;
    tracing::info!(request = %id, client_id = ?w.client_id, ?decision, "sign-in decided on the server");
    Ok(match decision {
        Decision::Approve => format!(
            "Approved {id}: {}.\nPress Continue on the approval page to finish the sign-in.\n",
            describe_client(&w)
        ),
        Decision::Deny => format!(
            "Denied {id}: {}. The approval page will say it expired.\n",
            describe_client(&w)
        ),
    })
}

fn describe_client(w: &PendingSummary) -> String {
    let name = w.client_name.as_deref().unwrap_or("an unnamed client");
    match url::Url::parse(&w.client_id) {
        Ok(u) if w.client_id.starts_with("http") => {
            format!("{name} (described by {})", u.host_str().unwrap_or("?"))
        }
        _ => format!("{name} (client {})", w.client_id),
    }
}

fn age(secs: i64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs / 60)
    }
}
