//! Deserializers for appspec values that check the value *inside* its own
//! deserialization, so that serde_yaml reports a bad value at its own line and column
//! (an error raised after `String::deserialize` returns is reported at the enclosing
//! map or list instead).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{FileExistsBehavior, HookScript, Mode, ObjectType, Pattern};
use crate::event::LifecycleEvent;
use crate::paths::{BundlePath, HostPath};

/// The longest a single lifecycle event's scripts may run together, in seconds.
pub const MAX_EVENT_SECONDS: u64 = 3600;

/// A scalar as text, whatever YAML type it was written as (for messages and for
/// values that may be numbers or strings).
fn scalar_text<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    check: impl FnOnce(Scalar) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct Check<F, T>(F, &'static str, PhantomData<T>);
    impl<'de, T, F: FnOnce(Scalar) -> Result<T, String>> Visitor<'de> for Check<F, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.1)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(Scalar::Str(v.to_string())).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            (self.0)(Scalar::Int(i128::from(v))).map_err(E::custom)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            (self.0)(Scalar::Int(i128::from(v))).map_err(E::custom)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            (self.0)(Scalar::Float(v)).map_err(E::custom)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
            (self.0)(Scalar::Str(v.to_string())).map_err(E::custom)
        }
    }
    d.deserialize_any(Check(check, expecting, PhantomData))
}

/// A YAML scalar.
enum Scalar {
    Str(String),
    Int(i128),
    Float(f64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// A string, checked by `check`.
fn checked_str<'de, D: Deserializer<'de>, T>(
    d: D,
    check: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, D::Error> {
    scalar_text(d, "a string", |s| match s {
        Scalar::Str(s) => check(s),
        other => check(other.to_string()),
    })
}

pub fn version<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    scalar_text(d, "the version 0.0", |v| {
        let ok = match &v {
            Scalar::Float(x) => *x == 0.0,
            Scalar::Int(i) => *i == 0,
            Scalar::Str(s) => s.trim() == "0.0",
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "`{v}` is not supported; slipway-agent supports only appspec version 0.0, so write `version: 0.0`"
            ))
        }
    })
}

pub fn os<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    checked_str(d, |os| match os.as_str() {
        "linux" => Ok(()),
        "windows" => Err(
            "`windows` is not supported; slipway-agent runs on Linux hosts, so write `os: linux`"
                .to_string(),
        ),
        other => Err(format!("`{other}` is not known; write `os: linux`")),
    })
}

pub fn bundle_path<'de, D: Deserializer<'de>>(d: D) -> Result<BundlePath, D::Error> {
    checked_str(d, |s| BundlePath::parse(&s))
}

pub fn host_path<'de, D: Deserializer<'de>>(d: D) -> Result<HostPath, D::Error> {
    checked_str(d, |s| HostPath::parse(&s))
}

pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked_str(d, |s| {
        let s = s.trim().to_string();
        if s.is_empty() || s.contains(['/', ':', '\0']) || s.chars().any(char::is_whitespace) {
            Err(format!(
                "`{s}` is not a user or group name; write a name such as `www-data`"
            ))
        } else {
            Ok(Some(s))
        }
    })
}

pub fn file_exists_behavior<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<FileExistsBehavior>, D::Error> {
    checked_str(d, |s| match s.as_str() {
        "DISALLOW" => Ok(Some(FileExistsBehavior::Disallow)),
        "OVERWRITE" => Ok(Some(FileExistsBehavior::Overwrite)),
        "RETAIN" => Ok(Some(FileExistsBehavior::Retain)),
        other => Err(format!(
            "`{other}` is not one of DISALLOW, OVERWRITE or RETAIN (in capitals)"
        )),
    })
}

pub fn pattern<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Pattern>, D::Error> {
    checked_str(d, |s| Pattern::new(&s).map(Some))
}

pub fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
    #[derive(Deserialize)]
    struct One(#[serde(deserialize_with = "pattern")] Option<Pattern>);
    let list = Option::<Vec<One>>::deserialize(d)?;
    Ok(list.into_iter().flatten().filter_map(|p| p.0).collect())
}

pub fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Mode>, D::Error> {
    scalar_text(d, "an octal mode such as \"0644\"", |v| {
        let (digits, read_as) = match &v {
            Scalar::Str(s) => (s.trim().to_string(), String::new()),
            // YAML reads an unquoted 0644 as the number 644: its digits are still octal.
            Scalar::Int(i) if *i >= 0 => (i.to_string(), " (YAML read it as a number)".into()),
            _ => (String::new(), String::new()),
        };
        let valid = !digits.is_empty()
            && digits.len() <= 4
            && digits.chars().all(|c| ('0'..='7').contains(&c));
        match u32::from_str_radix(&digits, 8) {
            Ok(bits) if valid => Ok(Some(Mode(bits))),
            _ => Err(format!(
                "`{v}`{read_as} is not an octal mode; write it as a quoted octal string such as \"0644\" or \"0755\""
            )),
        }
    })
}

pub fn object_types<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ObjectType>>, D::Error> {
    #[derive(Deserialize)]
    struct One(#[serde(deserialize_with = "object_type")] ObjectType);
    fn object_type<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectType, D::Error> {
        checked_str(d, |s| match s.as_str() {
            "file" => Ok(ObjectType::File),
            "directory" => Ok(ObjectType::Directory),
            other => Err(format!("type `{other}` is not `file` or `directory`")),
        })
    }
    let list = Vec::<One>::deserialize(d)?;
    if list.is_empty() {
        return Err(de::Error::custom(
            "type is empty; list `file`, `directory` or both (or leave type out for both)",
        ));
    }
    Ok(Some(list.into_iter().map(|o| o.0).collect()))
}

pub fn refuse_acls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    refuse(
        d,
        "acls are not supported by slipway-agent; remove them and run setfacl from an AfterInstall script",
    )
}

pub fn refuse_context<'de, D: Deserializer<'de>>(d: D) -> Result<Option<()>, D::Error> {
    refuse(
        d,
        "SELinux context is not supported by slipway-agent; remove it and run semanage/restorecon from an AfterInstall script",
    )
}

/// Fails with `message` at the value, whatever it is.
fn refuse<'de, D: Deserializer<'de>>(d: D, message: &'static str) -> Result<Option<()>, D::Error> {
    struct Refuse(&'static str);
    impl Refuse {
        fn no<T, E: de::Error>(self) -> Result<T, E> {
            Err(E::custom(self.0))
        }
    }
    impl<'de> Visitor<'de> for Refuse {
        type Value = Option<()>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("nothing")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.no()
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            self.no()
        }
        fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            self.no()
        }
    }
    d.deserialize_any(Refuse(message))
}

pub fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    scalar_text(d, "a number of seconds", |v| match v {
        Scalar::Int(i) if i > 0 && i <= i128::from(MAX_EVENT_SECONDS) => {
            u64::try_from(i).map(Some).map_err(|e| e.to_string())
        }
        Scalar::Int(i) if i > 0 => Err(format!(
            "{i} seconds is more than {MAX_EVENT_SECONDS}, the limit for one lifecycle event"
        )),
        other => Err(format!(
            "`{other}` is not a whole number of seconds above 0; write e.g. `timeout: 300`"
        )),
    })
}

/// The `hooks` map: known scriptable events only, with the sum of
/// its scripts' timeouts within [`MAX_EVENT_SECONDS`]. Each check fails inside the
/// value it is about (the key, the list), so the error points there.
pub fn hooks<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<LifecycleEvent, Vec<HookScript>>, D::Error> {
    struct Hooks;
    impl<'de> Visitor<'de> for Hooks {
        type Value = BTreeMap<LifecycleEvent, Vec<HookScript>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map from lifecycle event names to lists of scripts")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut hooks = BTreeMap::new();
            // Duplicate keys never get here: `parse` refuses them first.
            while let Some(event) = map.next_key_seed(HookEvent)? {
                let scripts = map.next_value_seed(Scripts { event })?;
                hooks.insert(event, scripts);
            }
            Ok(hooks)
        }
    }
    d.deserialize_any(Hooks)
}

/// A key of `hooks`.
struct HookEvent;

impl<'de> DeserializeSeed<'de> for HookEvent {
    type Value = LifecycleEvent;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<LifecycleEvent, D::Error> {
        checked_str(d, |name| {
            let valid = LifecycleEvent::scriptable_names();
            match name.parse::<LifecycleEvent>() {
                Ok(event) if event.is_scriptable() => Ok(event),
                Ok(event) => Err(format!(
                    "`{event}` is run by the agent itself and takes no scripts; the events that take scripts are: {valid}"
                )),
                Err(_) => {
                    let hint = LifecycleEvent::SCRIPTABLE
                        .iter()
                        .find(|e| e.name().eq_ignore_ascii_case(&name))
                        .map(|e| format!(" (did you mean `{e}`?)"))
                        .unwrap_or_default();
                    Err(format!(
                        "unknown lifecycle event `{name}`{hint}; the events that take scripts are: {valid}"
                    ))
                }
            }
        })
    }
}

/// One event's scripts; null means none.
struct Scripts {
    event: LifecycleEvent,
}

impl<'de> DeserializeSeed<'de> for Scripts {
    type Value = Vec<HookScript>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<HookScript>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scripts {
    type Value = Vec<HookScript>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of scripts, each with a `location`")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<HookScript>, E> {
        Ok(Vec::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<HookScript>, A::Error> {
        let mut scripts = Vec::new();
        while let Some(script) = seq.next_element::<HookScript>()? {
            scripts.push(script);
        }
        let total: u64 = scripts.iter().map(|s| s.timeout.as_secs()).sum();
        if total > MAX_EVENT_SECONDS {
            return Err(de::Error::custom(format!(
                "the timeouts of the {} scripts add up to {total} seconds, more than the {MAX_EVENT_SECONDS} one event may take (a script without `timeout` counts as {MAX_EVENT_SECONDS}); lower them",
                self.event
            )));
        }
        Ok(scripts)
    }
}
