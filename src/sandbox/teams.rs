//! Organization teams: who is a member of which team, and GitHub's team membership
//! endpoint (`GET /orgs/{org}/teams/{team_slug}/memberships/{username}`), which answers
//! 404 for a login that is not a member.

use serde_json::json;

use super::FakeGithub;
use super::reply::Reply;
use super::state::State;

const DOCS: &str = "https://docs.github.com/rest/teams/members#get-team-membership-for-a-user";

impl FakeGithub {
    /// Makes `user` an active member of team `team` (its slug) of organization `org`.
    pub fn add_team_member(&self, org: &str, team: &str, user: &str) {
        self.state().team_members.insert((
            org.to_lowercase(),
            team.to_lowercase(),
            user.to_lowercase(),
        ));
    }
}

impl State {
    pub(super) fn get_team_membership(&self, org: &str, team: &str, user: &str) -> Reply {
        let key = (org.to_lowercase(), team.to_lowercase(), user.to_lowercase());
        if !self.team_members.contains(&key) {
            return Reply::not_found(DOCS);
        }
        Reply::json(
            200,
            json!({
                "url": format!("{}/orgs/{org}/teams/{team}/memberships/{user}", self.base_url),
                "role": "member",
                "state": "active",
            }),
        )
    }
}
