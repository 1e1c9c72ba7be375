//! Reads the function under `#[task]` into a [`Task`], checking that it can be a task: an async
//! fn at module level whose arguments are owned, serializable values. What it returns is left to
//! the compiler (`dtask::TaskOutput`).

use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

/// One argument of the task.
pub(crate) struct Arg {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
    /// A `State<..>`: filled by the worker, not part of the job.
    pub(crate) injected: bool,
    /// Whether its type can be named in the generated code (it is not a reference, a borrow,
    /// `impl Trait`, a trait object, nor a type of a generic fn); an error was given if not.
    pub(crate) usable: bool,
}

/// The function, as far as the expansion needs it.
pub(crate) struct Task<'a> {
    pub(crate) item: &'a ItemFn,
    pub(crate) args: Vec<Arg>,
    /// The return type as written (`None` for `()`, or for a type that cannot be a task's, an
    /// error given); what it means is decided by its type, through `dtask::TaskOutput`, not by
    /// how it is spelled.
    pub(crate) returns: Option<Type>,
    /// Whether the fn can be called as a task (async, not generic, not unsafe...): when not,
    /// the generated module keeps its shape but never calls it.
    pub(crate) callable: bool,
    /// Whether the fn takes `self`: it sits in an `impl`, where no module can be generated.
    pub(crate) method: bool,
}

impl<'a> Task<'a> {
    /// Reads `item`, with every reason it cannot be a task, each on its own tokens. The task is
    /// read as far as it can be even then, so that the module is still generated.
    pub(crate) fn from_syn(item: &'a ItemFn) -> (Task<'a>, Option<syn::Error>) {
        let sig = &item.sig;
        let mut errors: Vec<syn::Error> = Vec::new();
        let generic = !sig.generics.params.is_empty() || sig.generics.where_clause.is_some();
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new_spanned(
                sig.fn_token,
                "a task must be an `async fn`",
            ));
        }
        if generic {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                "a task cannot be generic: its jobs must name one concrete function",
            ));
        }
        if let Some(variadic) = &sig.variadic {
            errors.push(syn::Error::new_spanned(
                variadic,
                "a task cannot be variadic",
            ));
        }
        if let syn::Safety::Unsafe(unsafety) = &sig.safety {
            errors.push(syn::Error::new_spanned(
                unsafety,
                "a task cannot be an `unsafe fn`: a worker calls it, and nobody is there to uphold its safety contract",
            ));
        }
        if let Some(again) = item.attrs.iter().find(|attr| is_task_attribute(attr)) {
            errors.push(syn::Error::new_spanned(
                again,
                "`#[task]` is given twice on this fn: keep one",
            ));
        }
        if sig.inputs.len() > MAX_ARGS {
            errors.push(syn::Error::new_spanned(
                &sig.inputs,
                format!(
                    "a task takes at most {MAX_ARGS} arguments (they travel as one tuple); gather them in a struct"
                ),
            ));
        }
        let mut args = Vec::new();
        let mut method = false;
        for (index, input) in sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(receiver) => {
                    method = true;
                    errors.push(syn::Error::new_spanned(
                        receiver,
                        "a task cannot take `self`: put `#[task]` on a free function at module level",
                    ));
                }
                FnArg::Typed(typed) => {
                    if let Some(attr) = typed.attrs.iter().find(|attr| {
                        attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr")
                    }) {
                        errors.push(syn::Error::new_spanned(
                            attr,
                            "a task's parameters cannot be conditional (`#[cfg]`): a job enqueued by one build must fit the task in every other",
                        ));
                        continue;
                    }
                    let injected = is_state(&typed.ty);
                    let owned = check_owned(&typed.ty);
                    let usable = owned.is_none() && !generic;
                    if let Some(error) = owned {
                        errors.push(if injected {
                            syn::Error::new(
                                error.span(),
                                "a `State` holds an owned value the worker clones for each run (`T: Clone + Send + Sync + 'static`), not a reference or a borrow",
                            )
                        } else {
                            error
                        });
                    }
                    // The name `enqueue` and the builder's `enqueue` take this argument by; a
                    // pattern, or a name that is also an item of the generated module (it
                    // would be read as that item), gets a name of its own.
                    let name = match &*typed.pat {
                        Pat::Ident(pat)
                            if pat.by_ref.is_none()
                                && pat.subpat.is_none()
                                && !GENERATED_ITEMS.iter().any(|item| pat.ident == item) =>
                        {
                            pat.ident.clone()
                        }
                        other => Ident::new(&format!("__dtask_arg{index}"), other.span()),
                    };
                    args.push(Arg {
                        name,
                        ty: (*typed.ty).clone(),
                        injected,
                        usable,
                    });
                }
            }
        }
        let returns = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => match &**ty {
                Type::Never(never) => {
                    errors.push(syn::Error::new_spanned(
                        never,
                        "a task cannot return `!`: a job must be able to finish",
                    ));
                    None
                }
                Type::ImplTrait(impl_trait) => {
                    errors.push(syn::Error::new_spanned(
                        impl_trait.impl_token,
                        "a task cannot return `impl Trait`: name a concrete type, so that waiting on a job knows what it gets",
                    ));
                    None
                }
                _ if generic => None,
                ty => Some(ty.clone()),
            },
        };
        let callable = errors.is_empty();
        let mut errors = errors.into_iter();
        let error = errors.next().map(|mut first| {
            for error in errors {
                first.combine(error);
            }
            first
        });
        let task = Task {
            item,
            args,
            returns,
            callable,
            method,
        };
        (task, error)
    }
}

/// The most arguments a task takes: serde (de)serializes tuples of up to 16 elements.
const MAX_ARGS: usize = 16;

/// The items of the module `#[task]` generates, which a parameter must not be named after.
const GENERATED_ITEMS: &[&str] = &["NAME", "INFO", "Output", "Builder"];

/// Whether `attr` is (another) `#[task]`, `#[dtask::task]` or `#[..::task(..)]`.
pub(crate) fn is_task_attribute(attr: &syn::Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "task")
}

/// Whether `ty` is spelled `State<..>` (`dtask::State<App>`, `State<App>`): a parameter the
/// worker fills in. The generated code checks that it really is `dtask::State`.
fn is_state(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|segment| {
            segment.ident == "State"
                && matches!(segment.arguments, PathArguments::AngleBracketed(_))
        })
}

/// An error on the first part of `ty` that borrows: a reference, a lifetime, or `impl Trait`.
fn check_owned(ty: &Type) -> Option<syn::Error> {
    match ty {
        Type::Reference(reference) => Some(syn::Error::new_spanned(
            reference.and_token,
            "a task's arguments must be owned values (they travel through Redis); take `String`, `Vec<T>` or a struct instead of a reference",
        )),
        Type::ImplTrait(impl_trait) => Some(syn::Error::new_spanned(
            impl_trait.impl_token,
            "a task cannot take or return `impl Trait`: name a concrete type that implements `Serialize` and `Deserialize`",
        )),
        Type::TraitObject(object) => Some(syn::Error::new_spanned(
            object,
            "a task cannot take or return a trait object: name a concrete type",
        )),
        Type::Path(path) => {
            if let Some(qself) = &path.qself
                && let Some(error) = check_owned(&qself.ty)
            {
                return Some(error);
            }
            for segment in &path.path.segments {
                if let PathArguments::AngleBracketed(generic) = &segment.arguments {
                    for arg in &generic.args {
                        let error = match arg {
                            GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                                Some(syn::Error::new_spanned(
                                    lifetime,
                                    "a task's arguments must be owned: no lifetimes but `'static`, so that they can be `DeserializeOwned`",
                                ))
                            }
                            GenericArgument::Type(inner) => check_owned(inner),
                            _ => None,
                        };
                        if error.is_some() {
                            return error;
                        }
                    }
                }
            }
            None
        }
        Type::Tuple(tuple) => tuple.elems.iter().find_map(check_owned),
        Type::Array(array) => check_owned(&array.elem),
        Type::Slice(slice) => check_owned(&slice.elem),
        Type::Paren(paren) => check_owned(&paren.elem),
        Type::Group(group) => check_owned(&group.elem),
        _ => None,
    }
}
