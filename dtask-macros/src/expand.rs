//! Writes what `#[task]` adds beside the function: a module of the same name with `enqueue`,
//! `enqueue_many`, `call`, `with`, `with_input`, `job`, `NAME`, `INFO`, `Output`, `Task`, the
//! handler and its registration; its argument and result types are named in a module inside it
//! that imports everything the task's module sees (paths from `self` and `super` rebased; a
//! relative path a type macro expands to is not), and a marker constant beside the fn proves
//! the task is at module level.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ItemFn;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;

use crate::ast::Task;
use crate::attr::TaskArgs;

/// Expands `#[task(args)] item`. On a mistake, the module is still generated, as far as the
/// task could be read (options that were read well, defaults for the others; a fn that cannot
/// be called is never called), so that the only errors shown are the ones about the task, and
/// not one more at each place that enqueues it.
pub(crate) fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[task]` goes on an `async fn` at module level",
            );
            let error = error.to_compile_error();
            return quote! { #error #item };
        }
    };
    let (mut args, args_error) = TaskArgs::parse(args);
    let (task, task_error) = Task::from_syn(&item);
    let schedule_error = check_schedule(&args, &task).err();
    if schedule_error.is_some() {
        args.cron = None;
        args.tz = None;
    }
    let mut errors = [args_error, task_error, schedule_error]
        .into_iter()
        .flatten();
    let error = errors.next().map(|mut first| {
        for more in errors {
            first.combine(more);
        }
        first.to_compile_error()
    });
    if task.method {
        // A method sits in an `impl`, where no module can go: the fn as written, and why.
        let item = without_task_attribute(&item);
        return quote! { #item #error };
    }
    let generated = generate(&args, &task);
    quote! { #generated #error }
}

/// The fn as written, without another `#[task]` on it (which would expand again).
fn without_task_attribute(item: &ItemFn) -> ItemFn {
    let mut item = item.clone();
    item.attrs
        .retain(|attr| !crate::ast::is_task_attribute(attr));
    item
}

/// A task scheduled with `cron` takes no job arguments: each tick would not know what to pass.
fn check_schedule(args: &TaskArgs, task: &Task<'_>) -> syn::Result<()> {
    match &args.cron {
        Some(cron) if task.args.iter().any(|arg| !arg.injected) => Err(syn::Error::new(
            cron.span(),
            "`cron` schedules a task that takes no arguments; schedule a task with arguments in code, with its arguments: `.periodic(dtask::periodic(\"name\", \"0 0 7 * * *\", my_task::call(args..)))` on the worker",
        )),
        _ => Ok(()),
    }
}

/// `tokens` with every token at `span`: errors about the task's output type, which each
/// generated signature names, then point at one place and are reported once.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|tree| match tree {
            TokenTree::Group(group) => {
                let mut again = Group::new(group.delimiter(), respan(group.stream(), span));
                again.set_span(span);
                TokenTree::Group(again)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// `ty` as named from a module two levels below the one where it was written (the generated
/// module's `__dtask_types`, which imports everything of the task's module): a path that
/// starts at `self` or `super` starts two levels higher.
fn from_two_levels_down(ty: &syn::Type) -> syn::Type {
    struct Rebase;
    impl VisitMut for Rebase {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            if path.leading_colon.is_none()
                && let Some(first) = path.segments.first()
                && (first.ident == "self" || first.ident == "super")
            {
                let span = first.ident.span();
                let up = |name: &str| syn::PathSegment::from(Ident::new(name, span));
                let rest: Vec<syn::PathSegment> = if first.ident == "self" {
                    path.segments.iter().skip(1).cloned().collect()
                } else {
                    path.segments.iter().cloned().collect()
                };
                path.segments = [up("super"), up("super")].into_iter().chain(rest).collect();
            }
            syn::visit_mut::visit_path_mut(self, path);
        }

        fn visit_type_path_mut(&mut self, ty: &mut syn::TypePath) {
            // `<T as self::Trait>::A`: the trait's segments are counted by `position`.
            let before = ty.path.segments.len();
            syn::visit_mut::visit_type_path_mut(self, ty);
            if let Some(qself) = &mut ty.qself {
                qself.position += ty.path.segments.len() - before;
            }
        }

        fn visit_expr_path_mut(&mut self, expr: &mut syn::ExprPath) {
            let before = expr.path.segments.len();
            syn::visit_mut::visit_expr_path_mut(self, expr);
            if let Some(qself) = &mut expr.qself {
                qself.position += expr.path.segments.len() - before;
            }
        }
    }
    let mut ty = ty.clone();
    Rebase.visit_type_mut(&mut ty);
    ty
}

fn generate(args: &TaskArgs, task: &Task<'_>) -> TokenStream {
    let item = without_task_attribute(task.item);
    let vis = &item.vis;
    let ident = &item.sig.ident;
    let krate = args
        .crate_path
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::dtask));
    let private = quote!(#krate::__private);

    let name = match &args.name {
        Some(name) => quote!(#name),
        None => quote!(::core::module_path!()),
    };
    let queue = args
        .queue
        .as_ref()
        .map_or_else(|| quote!("default"), |queue| quote!(#queue));
    let retries = args.retries.unwrap_or(3);
    let some_ms = |ms: Option<u64>| match ms {
        Some(ms) => quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let result_ttl = some_ms(args.result_ttl_ms);
    let unique_for = some_ms(args.unique_for_ms);
    let timeout = some_ms(args.timeout_ms);
    let some_str = |text: &Option<syn::LitStr>| match text {
        Some(text) => quote!(::core::option::Option::Some(#text)),
        None => quote!(::core::option::Option::None),
    };
    let cron = some_str(&args.cron);
    let tz = some_str(&args.tz);
    // A malformed rate fails the constant that reads it, at the user's literal.
    let rate = match &args.rate {
        Some(rate) => quote_spanned! {rate.span()=>
            ::core::option::Option::Some(#krate::__private::task_rate(#rate))
        },
        None => quote!(::core::option::Option::None),
    };
    let version = args.version.unwrap_or(1);
    // A job of an older version: converted by the task's migration when it has one, else
    // read as the parameters are now.
    let decode = match &args.migrate {
        Some(path) => {
            let migrate_span = path.span();
            // Named from where the task is: a relative path is one level up from the module
            // the expansion makes.
            let absolute = path.leading_colon.is_some()
                || path.segments.first().is_some_and(|s| s.ident == "crate");
            let path = if absolute {
                quote!(#path)
            } else {
                let rest = path.segments.iter().skip_while(|s| s.ident == "self");
                quote!(super::#(#rest)::*)
            };
            // Spanned at the fn's name in the attribute: a migration of the wrong shape is
            // reported there.
            quote_spanned!(migrate_span=> #private::decode_migrated::<Task, _, _>(args, version, #path))
        }
        None => quote!(#private::decode_args::<Task>(args, version)),
    };
    let partitions = args.partitions.unwrap_or(1);
    let max_running = match args.max_running {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };

    // The types of the parameters and of the result are named in `__dtask_types`, a module
    // inside the generated one that imports everything the task's module sees, so that they
    // mean there what they mean where the user wrote them.
    let types = quote!(self::__dtask_types);
    let arg_alias: Vec<_> = (0..task.args.len())
        .map(|i| format_ident!("__dtask_arg{}", i))
        .collect();
    let usable: Vec<usize> = (0..task.args.len())
        .filter(|&i| task.args[i].usable)
        .collect();
    let alias_defs = usable.iter().map(|&i| {
        let alias = &arg_alias[i];
        let ty = from_two_levels_down(&task.args[i].ty);
        quote! {
            #[allow(non_camel_case_types)]
            pub(super) type #alias = #ty;
        }
    });
    let output_type = match &task.returns {
        None => quote!(()),
        Some(ty) => {
            let ty = from_two_levels_down(ty);
            quote!(#ty)
        }
    };
    let output_span = match &item.sig.output {
        syn::ReturnType::Default => item.sig.ident.span(),
        syn::ReturnType::Type(_, ty) => ty.span(),
    };
    // Each parameter's type where a value of it is taken (a parameter whose type cannot be
    // named, after an error on it, takes anything), and in the tuple the job carries.
    let param_type = |i: usize| {
        if task.args[i].usable {
            let alias = &arg_alias[i];
            respan(quote!(#types::#alias), task.args[i].ty.span())
        } else {
            quote!(impl ::core::marker::Sized)
        }
    };
    let tuple_type = |i: usize| {
        if task.args[i].usable {
            param_type(i)
        } else {
            quote!(())
        }
    };

    // The job's arguments (what `enqueue` takes and the job carries) and the injected ones
    // (`State<..>`, filled by the worker).
    let job_args: Vec<usize> = (0..task.args.len())
        .filter(|&i| !task.args[i].injected)
        .collect();
    let injected: Vec<usize> = (0..task.args.len())
        .filter(|&i| task.args[i].injected && task.args[i].usable)
        .collect();
    let arg_names: Vec<_> = job_args.iter().map(|&i| &task.args[i].name).collect();
    let params: Vec<_> = job_args.iter().map(|&i| param_type(i)).collect();
    let tuple: Vec<_> = job_args.iter().map(|&i| tuple_type(i)).collect();
    // Past 16 parameters (an error given) no tuple is a job's arguments: the module takes none.
    // The tuple is spanned at the fn's parameter list: an argument type that cannot travel is
    // reported there (by its name), once.
    let args_tuple = if tuple.len() > 16 {
        quote!(())
    } else {
        let mut group = Group::new(Delimiter::Parenthesis, quote!(#(#tuple,)*));
        group.set_span(item.sig.paren_token.span.join());
        quote!(#group)
    };

    // One argument travels as `(a,)`, several as `(a, b)`; `enqueue_many` takes `T` for one
    // argument and `(A, B)` for several.
    let wrap_input = job_args.len() == 1;
    let (item_type, item_to_args) = if job_args.len() == 1 {
        let only = &tuple[0];
        (quote!(#only), quote!(|item| (item,)))
    } else {
        (args_tuple.clone(), quote!(|item| item))
    };

    // `Task` names the parameters' types in a trait impl, so it may be no more visible than
    // they are: public for a public task, else as visible as the task's own fn.
    let task_vis = match &item.vis {
        syn::Visibility::Public(_) => quote!(pub),
        syn::Visibility::Restricted(restricted) if restricted.path.is_ident("crate") => {
            quote!(pub(crate))
        }
        _ => quote!(pub(super)),
    };
    // The parameters' names, for errors about a job's arguments.
    let param_names: Vec<String> = job_args
        .iter()
        .map(|&i| task.args[i].name.to_string())
        .collect();

    // Named for the mistake it catches: a module in a fn body cannot import it from `super`.
    // A constant, so that it is also allowed (and harmless) in an `impl`.
    let module_level = format_ident!(
        "__dtask_task_must_be_declared_at_module_level_{}",
        ident,
        span = ident.span()
    );

    let imports = respan(
        quote! {
            #[allow(unused_imports, deprecated)]
            use super::{#module_level as _, #ident as __dtask_fn};
        },
        ident.span(),
    );

    // With a fn that cannot be called as a task, the module keeps its shape (so that code
    // using it adds no errors) and its functions do nothing: the crate does not compile.
    let body = |tokens: TokenStream| {
        if task.callable {
            quote!({ #tokens })
        } else {
            quote!({ #private::never_generated() })
        }
    };
    let enqueue_with = |options: TokenStream| {
        body(quote!(#private::enqueue::<Task>(#options, (#(#arg_names,)*)).await))
    };
    let call_with =
        |options: TokenStream| body(quote!(#private::call::<Task>(#options, (#(#arg_names,)*))));
    let enqueue_many_with = |options: TokenStream| {
        body(quote!(
            #private::enqueue_many::<Task>(#options, ::core::iter::Iterator::map(
                ::core::iter::IntoIterator::into_iter(items),
                #item_to_args,
            )).await
        ))
    };
    let defaults = quote!(#private::options(&INFO));
    let enqueue_body = enqueue_with(defaults.clone());
    let enqueue_many_body = enqueue_many_with(defaults.clone());
    let call_body = call_with(defaults.clone());
    let builder_enqueue_body = enqueue_with(quote!(self.0));
    let builder_call_body = call_with(quote!(self.0));
    let builder_many_body = enqueue_many_with(quote!(self.0));

    let fn_doc = format!(" Enqueue and follow jobs of the task [`{ident}`](fn@super::{ident}).");
    let enqueue_doc = format!(
        " Enqueues a job of `{ident}` with these arguments, through the default client, and returns its handle."
    );

    let output_ref = respan(quote!(Output), output_span);
    // What names the output type: all at the return type, so that a type that cannot be a
    // task's output is reported there, once.
    let surface = respan(
        quote! {
            /// What the task returns on success, and what waiting on a job yields.
            pub type Output = <#types::__dtask_output as #krate::TaskOutput>::Value;

            #[doc = #enqueue_doc]
            #[allow(unused_variables)]
            pub async fn enqueue(#(#arg_names: #params),*)
                -> ::core::result::Result<#krate::JobHandle<Output>, #krate::Error>
            #enqueue_body

            /// Enqueues one job per item, in one round trip. An item is the task's argument, or
            /// a tuple of its arguments when it has several.
            #[allow(unused_variables)]
            pub async fn enqueue_many(
                items: impl ::core::iter::IntoIterator<Item = #item_type>,
            ) -> ::core::result::Result<::std::vec::Vec<#krate::JobHandle<Output>>, #krate::Error>
            #enqueue_many_body

            /// A job of this task with these arguments, not enqueued yet: to enqueue later
            /// (`.enqueue()`), or to schedule with `dtask::periodic`.
            #[allow(unused_variables)]
            pub fn call(#(#arg_names: #params),*) -> #krate::Call<Output>
            #call_body

            /// This task as a step of a workflow, taking its input from the step before (its
            /// argument, or the tuple of its arguments): `dtask::chain(..).then(with_input())`.
            pub fn with_input() -> #krate::Then<#item_type, Output> {
                #private::then::<Task, #item_type>(#defaults, #wrap_input)
            }

            /// Options for the next enqueue: `.delay(..)`, `.at(..)`, `.queue(..)`,
            /// `.retries(..)`, `.client(..)`, then `.enqueue(..)` (or `.call(..)`).
            pub fn with() -> Builder {
                Builder(#private::options(&INFO))
            }

            /// A handle on the job `id` of this task, to read its status or wait for its result,
            /// from any process.
            pub fn job(id: impl ::core::convert::Into<#krate::JobId>) -> #krate::JobHandle<Output> {
                #private::job(&INFO, ::core::convert::Into::into(id))
            }

            /// Options for enqueueing jobs of this task; see [`with`].
            #[must_use = "a builder does nothing until `.enqueue(..)` is awaited"]
            pub struct Builder(#krate::Enqueue<Output>);

            impl Builder {
                /// Runs the job no sooner than `delay` from now.
                pub fn delay(self, delay: ::core::time::Duration) -> Self {
                    Builder(self.0.delay(delay))
                }

                /// Runs the job no sooner than `when`.
                pub fn at(self, when: impl ::core::convert::Into<::std::time::SystemTime>) -> Self {
                    Builder(self.0.at(when))
                }

                /// Sends the job to `queue` instead of the task's own.
                pub fn queue(self, queue: impl ::core::convert::Into<::std::string::String>) -> Self {
                    Builder(self.0.queue(queue))
                }

                /// Retries the job at most `retries` times instead of the task's default.
                pub fn retries(self, retries: u32) -> Self {
                    Builder(self.0.retries(retries))
                }

                /// Enqueues through `client` instead of the default client.
                pub fn client(self, client: &#krate::Client) -> Self {
                    Builder(self.0.client(client))
                }

                /// Limits each attempt of the job to `limit` instead of the task's timeout.
                pub fn timeout(self, limit: ::core::time::Duration) -> Self {
                    Builder(self.0.timeout(limit))
                }

                /// Names the job: while a job of that id exists, enqueueing it again returns
                /// that job's handle (see `dtask::Enqueue::id`).
                pub fn id(self, id: impl ::core::convert::Into<#krate::JobId>) -> Self {
                    Builder(self.0.id(id))
                }

                /// At most one job with these arguments for `window` (see
                /// `dtask::Enqueue::unique_for`).
                pub fn unique_for(self, window: ::core::time::Duration) -> Self {
                    Builder(self.0.unique_for(window))
                }

                /// Until when a unique job keeps duplicates out: its end or its start.
                pub fn unique_until(self, until: #krate::UniqueUntil) -> Self {
                    Builder(self.0.unique_until(until))
                }

                /// Waits until `replicas` replicas of the queue's Redis have the job, for at
                /// most `timeout` (see `dtask::Enqueue::replicas`).
                pub fn replicas(self, replicas: u32, timeout: ::core::time::Duration) -> Self {
                    Builder(self.0.replicas(replicas, timeout))
                }

                /// On a partitioned queue, sends the job to the partition of `key`: the jobs
                /// of one key go to one partition, in order (see
                /// `dtask::Enqueue::partition_key`).
                pub fn partition_key(self, key: impl ::core::fmt::Display) -> Self {
                    Builder(self.0.partition_key(key))
                }

                /// Enqueues the job with these arguments and returns its handle.
                #[allow(unused_variables)]
                pub async fn enqueue(self, #(#arg_names: #params),*)
                    -> ::core::result::Result<#krate::JobHandle<Output>, #krate::Error>
                #builder_enqueue_body

                /// This task with these options as a step of a workflow, taking its input
                /// from the step before.
                pub fn with_input(self) -> #krate::Then<#item_type, Output> {
                    #private::then::<Task, #item_type>(self.0, #wrap_input)
                }

                /// The job with these arguments and options, not enqueued yet.
                #[allow(unused_variables)]
                pub fn call(self, #(#arg_names: #params),*) -> #krate::Call<Output>
                #builder_call_body

                /// Enqueues one job per item, with these options, in one round trip.
                #[allow(unused_variables)]
                pub async fn enqueue_many(
                    self,
                    items: impl ::core::iter::IntoIterator<Item = #item_type>,
                ) -> ::core::result::Result<::std::vec::Vec<#krate::JobHandle<Output>>, #krate::Error>
                #builder_many_body
            }

        },
        output_span,
    );

    // The worker's side: the handler that runs a job, and its registration. Only for a fn
    // that can be called as a task.
    let handler = if task.callable {
        let locals: Vec<_> = (0..task.args.len())
            .map(|i| format_ident!("__dtask_local{}", i))
            .collect();
        let job_locals: Vec<_> = job_args.iter().map(|&i| &locals[i]).collect();
        let injections = injected.iter().map(|&i| {
            let (local, alias) = (&locals[i], &arg_alias[i]);
            let inject = respan(
                quote!(#private::inject::<#types::#alias>),
                task.args[i].ty.span(),
            );
            quote!(let #local = #inject(states)?;)
        });
        let state_alias = injected.iter().map(|&i| &arg_alias[i]);
        let call = quote_spanned! {item.sig.ident.span()=>
            #private::assert_send(__dtask_fn(#(#locals),*))
        };
        // A `Result` (under any name) fails the attempt with its error; anything else is the
        // result. The compiler decides, through `TaskOutput`.
        let finish = respan(
            quote!(#private::finish(<#types::__dtask_output as #krate::TaskOutput>::into_result(#call.await))),
            output_span,
        );
        quote! {
            #[doc(hidden)]
            #[allow(deprecated)]
            fn __dtask_handler(args: &str, version: u32, states: &#private::States) -> ::core::result::Result<#private::HandlerFuture, #private::HandlerError> {
                let (#(#job_locals,)*): <Task as #krate::TaskDef>::Args =
                    <Task as #krate::TaskDef>::decode_job(args, version)?;
                #(#injections)*
                ::core::result::Result::Ok(::std::boxed::Box::pin(async move { #finish }))
            }

            #private::inventory::submit! {
                #private::TaskEntry {
                    info: &INFO,
                    handler: __dtask_handler,
                    states: &[#(#private::StateNeed::of::<#types::#state_alias>()),*],
                    location: ::core::concat!(::core::file!(), ":", ::core::line!()),
                }
            }
        }
    } else {
        TokenStream::new()
    };

    quote! {
        #item

        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #module_level: () = ();

        #[doc = #fn_doc]
        // Generated code carries the user's spans (so that errors point at their tokens):
        // lints the user turned on for their own code are not about it.
        #[allow(
            dead_code,
            unreachable_pub,
            unused_qualifications,
            missing_debug_implementations,
            private_interfaces,
            private_bounds,
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            clippy::restriction,
            clippy::cargo
        )]
        #vis mod #ident {
            // The task's fn, and the proof that the task is declared at module level (a
            // module in a fn body cannot import from there).
            #imports

            #[doc(hidden)]
            mod __dtask_types {
                #[allow(unused_imports)]
                use super::super::*;
                #(#alias_defs)*
                #[allow(non_camel_case_types)]
                pub(super) type __dtask_output = #output_type;
            }

            /// The name jobs of this task carry.
            pub const NAME: &str = #name;

            /// The task's name and default settings.
            pub static INFO: #krate::TaskInfo = #krate::TaskInfo {
                name: NAME,
                queue: #queue,
                retries: #retries,
                timeout: #timeout,
                result_ttl: #result_ttl,
                cron: #cron,
                tz: #tz,
                unique_for: #unique_for,
                rate: #rate,
                max_running: #max_running,
                partitions: #partitions,
                version: #version,
            };

            /// This task as a type, for code generic over tasks (`dtask::TaskDef`).
            #task_vis enum Task {}

            #surface

            impl #krate::TaskDef for Task {
                type Args = #args_tuple;
                type Output = #output_ref;
                const INFO: &'static #krate::TaskInfo = &INFO;
                const PARAMS: &'static [&'static str] = &[#(#param_names),*];

                fn decode_job(
                    args: &str,
                    version: u32,
                ) -> ::core::result::Result<Self::Args, #private::HandlerError> {
                    __dtask_decode(args, version)
                }
            }

            /// Reads a job's arguments (see `TaskDef::decode_job`).
            fn __dtask_decode(
                args: &str,
                version: u32,
            ) -> ::core::result::Result<<Task as #krate::TaskDef>::Args, #private::HandlerError> {
                #decode
            }

            #handler
        }
    }
}
