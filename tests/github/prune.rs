//! Retention against a replay: once a push delivery's record is pruned, its delivery id is
//! no longer known, but the same signed webhook (under that id or another) still finds its
//! push deployed, through the deployment's trigger key, which is never pruned.

use std::process::Command;
use std::time::Duration;

use crate::bot::{Bot, SHA, push, wait_until};
use crate::common::TestDb;
use crate::{OK_SCRIPT, both_backends_owned};

/// `deploybot prune` on the bot's database; retried while the server's own pruning holds
/// the lease. Its stdout.
fn prune(bot: &Bot) -> String {
    let config = bot.dir().join("deploybot.toml");
    let mut printed = String::new();
    wait_until("deploybot prune to run", Duration::from_secs(60), || {
        let out = Command::new(env!("CARGO_BIN_EXE_deploybot"))
            .arg("prune")
            .arg("--config")
            .arg(&config)
            .env_remove("DATABASE_URL")
            .env("DEPLOYBOT_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                printed = String::from_utf8_lossy(&out.stdout).into_owned();
                true
            }
            Some(1) if stderr.contains("pruning this database now") => false,
            code => panic!("deploybot prune exited {code:?}: {stderr}"),
        }
    });
    printed
}

fn a_replayed_push_whose_delivery_was_pruned_does_not_deploy_again(db: TestDb) {
    let bot = Bot::start(db, OK_SCRIPT, "");
    let event = push("refs/heads/main", SHA, "octocat");
    let (status, first) = bot.send("push", &event, "delivery-1");
    assert_eq!(status, 202, "{first}");
    let id = first["deployments"][0].as_str().unwrap();
    bot.wait_final(id);

    // The delivery's record passes its retention and is pruned.
    let mut sql = bot.sql();
    sql.execute("UPDATE deliveries SET received_at = '2000-01-01 00:00:00'");
    let printed = prune(&bot);
    assert!(
        printed.contains("removed 1 webhook deliveries"),
        "{printed}"
    );
    assert_eq!(sql.count("SELECT COUNT(*) AS n FROM deliveries"), 0);

    // The attacker replays the signed push: under its own id, no longer a duplicate, and
    // under a new id; neither deploys again.
    for delivery in ["delivery-1", "delivery-replayed"] {
        let (status, answer) = bot.send("push", &event, delivery);
        assert_eq!(status, 202, "{answer}");
        assert_eq!(answer["status"], "already deployed", "{answer}");
    }
    let deployments = bot.deployments("web-staging");
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    assert_eq!(deployments[0].id.to_string(), id);
}

both_backends_owned!(a_replayed_push_whose_delivery_was_pruned_does_not_deploy_again);
