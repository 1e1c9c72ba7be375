//! `#[derive(TaskOutput)]`: a type of the user's own that a task returns as its result.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// Implements `dtask::TaskOutput` for the type, as its own result.
pub(crate) fn task_output(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates = where_clause
        .map(|clause| clause.predicates.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    predicates.push(syn::parse_quote!(
        Self: ::dtask::__private::serde::Serialize + ::core::marker::Send + 'static
    ));
    quote! {
        impl #impl_generics ::dtask::TaskOutput for #ident #type_generics
        where
            #(#predicates,)*
        {
            type Value = Self;

            fn into_result(self) -> ::core::result::Result<Self, ::std::string::String> {
                ::core::result::Result::Ok(self)
            }
        }
    }
}
