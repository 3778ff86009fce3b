//! What a deployment's page says about how it was judged: why it rolled back, failed or
//! was cancelled, each metric gate's last measurement, and the watch after success.

use chrono::{DateTime, Utc};

use super::html::{Html, clean_line};
use super::views::timestamp;
use crate::deploy::{DeployState, Deployment};

/// What the reason is called on the page: "Rolled back", "Failed", "Cancelled" (an error
/// of any other state is an "Error").
pub(super) fn reason_label(d: &Deployment) -> &'static str {
    match d.state {
        DeployState::RolledBack => "Rolled back",
        DeployState::Failed => "Failed",
        DeployState::Cancelled => "Cancelled",
        _ => "Error",
    }
}

/// The timeline's last entry for a deployment that rolled back, failed or was cancelled:
/// how it ended and why, when it ended.
pub(super) fn timeline_outcome(html: &mut Html, d: &Deployment) {
    let ended = matches!(
        d.state,
        DeployState::RolledBack | DeployState::Failed | DeployState::Cancelled
    );
    if !ended || d.error.trim().is_empty() {
        return;
    }
    html.raw("<li id=\"timeline-outcome\" class=\"outcome\"><strong>")
        .text(reason_label(d))
        .raw(":</strong> ")
        .text(clean_line(&d.error));
    if let Some(finished) = d.finished_at {
        html.raw(" <time>")
            .text(finished.format("%H:%M:%S"))
            .raw("</time>");
    }
    html.raw("</li>");
}

/// The gates section: "watching until …" while the watch runs, and a table of each metric
/// gate's last value, bound, result and where it was measured. Nothing when there is
/// neither.
pub(super) fn gates_section(html: &mut Html, d: &Deployment, now: DateTime<Utc>) {
    let watching = d
        .watch_until
        .filter(|until| *until > now && d.state == DeployState::Succeeded);
    if d.gates.is_empty() && watching.is_none() {
        return;
    }
    html.raw("<section id=\"gates\"><h2>Gates</h2>\n");
    if let Some(until) = watching {
        html.raw("<p id=\"watching\" class=\"watching\">Watching until ")
            .text(timestamp(until))
            .raw(": the metric gates keep measuring, and a failure rolls back to the previous release.</p>\n");
    }
    if !d.gates.is_empty() {
        html.raw("<table class=\"gates\"><thead><tr><th>Gate</th><th>Last value</th><th>Bound</th><th>Result</th><th>Measured at</th></tr></thead><tbody>");
        for g in &d.gates {
            let result = if g.passed { "passed" } else { "failed" };
            html.raw("<tr class=\"")
                .text(result)
                .raw("\"><td>")
                .text(clean_line(&g.gate))
                .raw("</td><td class=\"value\">")
                .text(clean_line(&g.value))
                .raw("</td><td>")
                .text(clean_line(&g.bound))
                .raw("</td><td class=\"result\">")
                .text(result)
                .raw("</td><td>")
                .text(clean_line(&g.at))
                .raw("</td></tr>");
        }
        html.raw("</tbody></table>\n");
    }
    html.raw("</section>\n");
}
