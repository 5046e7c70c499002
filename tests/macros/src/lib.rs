//! `#[suite(name)]` on a module of test flows lists its cases once.
//!
//! Each flows module (`tests/src/chat_flows.rs`, …) defines its cases as
//! `pub async fn`s and a `macro_rules! name` that turns a list of case names
//! into one `#[tokio::test]` per case for a backend. Written by hand, that list
//! repeats every function name, and a flow added without its list entry never
//! runs. This attribute reads the module and generates the list:
//! `name_cases!(args…)` expands to `name!(@cases args…; case_a, case_b, …)`
//! with every public async function of the module, in source order, except
//! those marked `#[not_in_suite]`.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, Item, ItemMod, Visibility, parse_macro_input};

/// `#[suite(chat_suite)] pub mod cases { … }`: generates `chat_suite_cases!`.
#[proc_macro_attribute]
pub fn suite(attr: TokenStream, item: TokenStream) -> TokenStream {
    let suite = parse_macro_input!(attr as Ident);
    let mut module = parse_macro_input!(item as ItemMod);
    let Some((_, items)) = &mut module.content else {
        return syn::Error::new_spanned(&module, "#[suite] needs an inline module (`mod cases { … }`)")
            .to_compile_error()
            .into();
    };
    // `#[not_in_suite]` keeps a public flow out of the list (one that must run in
    // a test binary of its own); the marker is removed here, it is not a real attribute.
    let mut cases: Vec<Ident> = Vec::new();
    for item in items.iter_mut() {
        let Item::Fn(f) = item else { continue };
        let before = f.attrs.len();
        f.attrs.retain(|a| !a.path().is_ident("not_in_suite"));
        let excluded = f.attrs.len() != before;
        if !excluded && matches!(f.vis, Visibility::Public(_)) && f.sig.asyncness.is_some() {
            cases.push(f.sig.ident.clone());
        }
    }
    if cases.is_empty() {
        return syn::Error::new_spanned(&module, "#[suite] found no `pub async fn` case")
            .to_compile_error()
            .into();
    }
    let list = format_ident!("{}_cases", suite);
    quote! {
        #module

        #[doc(hidden)]
        #[macro_export]
        macro_rules! #list {
            ($($args:tt)*) => {
                $crate::#suite!(@cases $($args)*; #(#cases),*);
            };
        }
    }
    .into()
}
