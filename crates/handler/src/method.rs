//! The methods a handler serves: user functions behind one type-erased signature, by name.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::context::CallContext;
use crate::error::MethodError;

/// What a method returns once its result is JSON.
pub(crate) type Outcome = Result<Value, MethodError>;

/// A method with its types erased: called once per call, in the call's own task.
pub(crate) type Method = Arc<dyn Fn(CallContext, Value) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// Wraps an async function taking the call's context and params into a [`Method`]. Its success
/// value may be anything serializable; its error anything that converts into a [`MethodError`].
pub(crate) fn erase<F, Fut, R, E>(f: F) -> Method
where
    F: Fn(CallContext, Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, E>> + Send + 'static,
    R: Serialize,
    E: Into<MethodError>,
{
    Arc::new(move |ctx, params| {
        let fut = f(ctx, params);
        Box::pin(async move {
            match fut.await {
                Ok(value) => serde_json::to_value(value)
                    .map_err(|e| MethodError::new(format!("the method's result is not valid JSON: {e}"))),
                Err(e) => Err(e.into()),
            }
        })
    })
}

/// The methods of one handler, by name (sorted, so error messages list them in a stable order).
#[derive(Default)]
pub(crate) struct Methods {
    by_name: BTreeMap<String, Method>,
}

impl Methods {
    /// Adds a method; gives it back if the name is taken.
    pub(crate) fn insert(&mut self, name: String, method: Method) -> Result<(), String> {
        match self.by_name.entry(name) {
            std::collections::btree_map::Entry::Occupied(e) => Err(e.key().clone()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(method);
                Ok(())
            }
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Method> {
        self.by_name.get(name)
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// The error for a call to a method this instance does not serve.
    pub(crate) fn unknown(&self, name: &str) -> String {
        let offered: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        format!("unknown method '{name}'; this instance offers: {}", offered.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_method_names_it_and_lists_the_offer_sorted() {
        let mut methods = Methods::default();
        for name in ["b", "a"] {
            methods.insert(name.into(), erase(|_, p| async move { Ok::<_, MethodError>(p) })).unwrap();
        }
        assert_eq!(methods.unknown("x"), "unknown method 'x'; this instance offers: a, b");
        assert_eq!(
            methods.insert("a".into(), erase(|_, p| async move { Ok::<_, MethodError>(p) })).unwrap_err(),
            "a"
        );
        assert_eq!(methods.names(), ["a", "b"]);
    }
}
