//! The first `access.yaml`, written by `slipway init`.

/// The initial `access.yaml`: `admin_name` administers everything with `admin_key`.
pub fn seed_access_yaml(admin_name: &str, admin_key: &str) -> String {
    format!(
        r#"# access.yaml: who may do what on this slipway server.
#
# Edit this file in a clone of the `admin` repository and push it to `main`. slipway
# checks the push and refuses it, with file:line:column, if something is wrong; once
# accepted, the change applies to the next request. Statements are checked like IAM
# policies: an explicit deny wins, then any allow; anything not allowed is denied.
#
# Resources: `repo:NAME_GLOB` (a repository and all of its refs) or
# `repo:NAME_GLOB:REF_GLOB` (matching refs only); `*` matches any characters.
# Actions: git:pull, git:push (fast-forward), git:create-ref, git:delete-ref,
# git:force-push, repo:create, repo:delete, audit:read, policy:simulate.

users:
  {admin_name}:
    keys:
      - "{admin_key}"
    groups: [admins]
  # alice:
  #   keys: ["ssh-ed25519 AAAA... alice@laptop"]
  #   email: alice@example.com
  #   groups: [developers]

groups:
  admins:
    policies: [administrator]
  developers:
    policies: [developer]

policies:
  administrator:
    - {{ effect: allow, actions: ["*"], resources: ["*"] }}
  developer:
    - {{ effect: allow, actions: ["git:pull", "git:push", "git:create-ref", "repo:create"], resources: ["repo:*"] }}
    - {{ effect: deny, actions: ["git:*"], resources: ["repo:admin"] }}
    - {{ effect: allow, actions: ["git:force-push", "git:delete-ref"], resources: ["repo:*:refs/heads/feature/*"] }}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_parses_and_makes_an_administrator() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClNSwlLOKV1n7gN5ORwrQv0ItlVvibQURHxkB4k8rLr admin@test";
        let text = seed_access_yaml("root", key);
        let config = crate::access::parse_access_yaml("access.yaml", &text).unwrap();
        assert_eq!(config.administrators().collect::<Vec<_>>(), vec!["root"]);
    }

    #[test]
    fn example_access_yaml_parses() {
        let text = include_str!("../../etc/access.yaml");
        crate::access::parse_access_yaml("etc/access.yaml", text).unwrap();
    }

    #[test]
    fn example_rules_yaml_parses_against_the_example_users() {
        use slipway_actors::config::rules::{parse_rules_yaml, RulesContext};
        let access = crate::access::parse_access_yaml(
            "etc/access.yaml",
            include_str!("../../etc/access.yaml"),
        )
        .unwrap();
        let context = RulesContext {
            users: access
                .users
                .iter()
                .map(|(n, u)| (n.clone(), u.email.is_some()))
                .collect(),
        };
        let rules = parse_rules_yaml(
            "etc/rules.yaml",
            include_str!("../../etc/rules.yaml"),
            &context,
        )
        .unwrap();
        assert_eq!(rules.rules.len(), 3);
    }

    #[test]
    fn example_builds_yaml_parses() {
        let builds = slipway_actors::config::builds::parse_builds_yaml(
            "etc/builds.yaml",
            include_str!("../../etc/builds.yaml"),
        )
        .unwrap();
        assert!(builds.for_repo("app-api").may_read("/app/token"));
    }

    #[test]
    fn example_deploy_yaml_parses() {
        let deploy = slipway_actors::config::deploy::parse_deploy_yaml(
            "etc/deploy.yaml",
            include_str!("../../etc/deploy.yaml"),
        )
        .unwrap();
        let prod = deploy.group("web", "prod").unwrap();
        assert_eq!(prod.alarms.len(), 3);
        assert!(deploy.group("web", "staging").is_some());
    }
}
