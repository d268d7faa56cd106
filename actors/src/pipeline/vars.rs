//! `#{namespace.NAME}` substitution at run time, from an execution's variables
//! (`{namespace: {name: value}}`).

use serde_json::Value;

/// `text` with every `#{namespace.NAME}` replaced; a reference without a value is an
/// error naming it (validation already refused unknown namespaces, but an action's
/// namespace only has the variables its build exported).
pub fn substitute(text: &str, variables: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` opens `#{{` without closing it"))?;
        let reference = &after[..end];
        let (ns, name) = reference
            .split_once('.')
            .ok_or_else(|| format!("`#{{{reference}}}` needs a namespace"))?;
        let value = variables
            .get(ns)
            .and_then(|vars| vars.get(name))
            .and_then(Value::as_str)
            .ok_or_else(|| match variables.get(ns) {
                None => format!("`#{{{reference}}}`: namespace `{ns}` has no values in this execution (did its action run?)"),
                Some(_) => format!("`#{{{reference}}}`: namespace `{ns}` has no variable `{name}`; export it from the build (env.exported-variables)"),
            })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_and_missing_ones_named() {
        let vars = serde_json::json!({
            "source": { "CommitId": "abc" },
            "B": { "IMAGE_TAG": "v1" },
        });
        assert_eq!(
            substitute("ship #{B.IMAGE_TAG} at #{source.CommitId}!", &vars).unwrap(),
            "ship v1 at abc!"
        );
        assert_eq!(substitute("plain", &vars).unwrap(), "plain");
        let e = substitute("#{B.NOPE}", &vars).unwrap_err();
        assert!(e.contains("no variable `NOPE`"), "{e}");
        let e = substitute("#{C.X}", &vars).unwrap_err();
        assert!(e.contains("namespace `C`"), "{e}");
        // A value is inserted as is, never scanned again.
        let vars = serde_json::json!({ "source": { "CommitMessage": "#{source.CommitMessage}" } });
        assert_eq!(
            substitute("m: #{source.CommitMessage}", &vars).unwrap(),
            "m: #{source.CommitMessage}"
        );
    }
}
